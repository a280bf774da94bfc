"""The text kinds of issue 10: SCANet's word graph and TF-IDF, built on emoji and on the Wikipedia articles.

For each collection, in a fresh temporary ``XMODAL_HOME`` (so the first call really builds):
the ``graph`` extractor (vertices, edges, lambda_max, build time, texts with no vertex word,
time of the cache hit) and the ``tfidf`` extractor (dims per part, time, cache hit), and the
text coverage of GloVe and MiniLM (:mod:`xmodal.encoders.coverage`).

The Wikipedia articles are read from ``texts/*.xml`` here (the text between ``<text>`` tags;
the files are not well-formed XML), with the train/test lists of the dataset; no image is read.

    python -m benchmarks probe text-kinds [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from benchmarks.plan import SHARED


def wikipedia_articles(root: Path):
    from xmodal.data.records import Dataset, Item

    items = []
    for split, listing in (("train", "trainset_txt_img_cat.list"), ("test", "testset_txt_img_cat.list")):
        for line in (root / listing).read_text().split("\n"):
            if not line.strip():
                continue
            text_id, image_id, category = line.split("\t")
            raw = (root / "texts" / f"{text_id}.xml").read_text(encoding="utf-8", errors="replace")
            match = re.search(r"<text>(.*?)</text>", raw, re.S)
            text = (match.group(1) if match else "").strip()
            items.append(Item(text_id, root / "images" / f"{image_id}.jpg", (text,), (int(category) - 1,), split))
    return Dataset("wikipedia-articles", items, [str(i) for i in range(10)], source=str(root / "texts"))


def measure(dataset) -> list[str]:
    from xmodal.encoders.coverage import dataset_coverage
    from xmodal.features.extract import ExtractOptions, extract

    options = ExtractOptions()
    lines = [f"### {dataset.name}: {len(dataset)} items, {sum(len(i.texts) for i in dataset)} texts "
             f"({len(dataset.split('train'))} train items)", ""]
    graph = extract(dataset, "graph", options)
    hit = extract(dataset, "graph", options)
    m = graph.features.manifest
    lines += ["| graph | value |", "| --- | --- |",
              f"| vertices (of {options.graph_vertices} asked) | {m['vertices']} |",
              f"| undirected edges (k = {options.graph_neighbours}, symmetrised) | {m['edges']} |",
              f"| lambda_max of L | {m['lambda_max']:.4f} |",
              f"| graph build (count words, kNN, Laplacian, lambda_max) | {m['build_seconds']:.2f} s |",
              f"| whole extraction (graph + counts of every text, written) | {graph.seconds:.2f} s |",
              f"| cache hit (second call) | {hit.seconds * 1000:.1f} ms (cached: {hit.cached}) |",
              f"| texts with no vertex word | {m['texts_without_vertex_words']} of {m['texts']} |",
              f"| disk | {graph.features.size_bytes() / 2**20:.2f} MiB |", ""]
    tfidf = extract(dataset, "tfidf", options)
    hit = extract(dataset, "tfidf", options)
    m = tfidf.features.manifest
    matrix = tfidf.features.sparse("tfidf")
    lines += ["| tfidf | value |", "| --- | --- |",
              f"| dims (max_features {options.tfidf_max_features}) | {m['dim']} "
              f"(word {m['parts']['word']}, char {m['parts']['char']}) |",
              f"| extraction (fit on train, transform all, written) | {tfidf.seconds:.2f} s |",
              f"| cache hit | {hit.seconds * 1000:.1f} ms (cached: {hit.cached}) |",
              f"| non-zeros per text (mean) | {matrix.nnz / matrix.shape[0]:.1f} |",
              f"| disk | {tfidf.features.size_bytes() / 2**20:.2f} MiB |", ""]
    started = time.perf_counter()
    coverage = dataset_coverage(dataset)
    lines += ["Text coverage (`xmodal data info`), "
              f"{time.perf_counter() - started:.1f} s:", "", "```", *coverage, "```", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe text-kinds", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from xmodal.logs import configure_logging

    configure_logging(0)
    with tempfile.TemporaryDirectory() as home:
        os.environ["XMODAL_HOME"] = home
        from xmodal.data.emoji import read_emoji

        lines = measure(read_emoji(SHARED / "emoji"))
        if (SHARED / "wikipedia" / "texts").is_dir():
            lines += measure(wikipedia_articles(SHARED / "wikipedia"))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
