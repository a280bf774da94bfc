"""`xmodal demo`: the main job, end to end, on the built-in emoji dataset (or any config's dataset).

Fetch the data, extract features (cached), train the default model (or reuse the run already in
``--out`` when its config and data are unchanged), evaluate it on the test split, rank a few test
texts against the test images and a few test images against the test texts, and write an HTML
report with the metrics, those queries, the training curves and the config.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xmodal.api import TrainedRun, load_run
from xmodal.config import RunConfig, dump_config, find_config, load_config, read_config
from xmodal.data.emoji import fetch_emoji
from xmodal.errors import XmodalError
from xmodal.eval.protocol import GroundTruth, encode_split, eval_settings, evaluate_encoded, score_matrix
from xmodal.eval.report import format_table
from xmodal.factory import dataset_of, train_config, with_resolved_paths
from xmodal.features.inputs import SplitData
from xmodal.models.base import Rep, take
from xmodal.paths import atomic_write_bytes
from xmodal.report_html import AttentionView, ImageQuery, TextQuery, item_label, render_report, write_report
from xmodal.run import Run
from xmodal.search.collection import read_collection
from xmodal.search.engine import label_words
from xmodal.search.index import SearchIndex, checkpoint_digest, read_manifest
from xmodal.training.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

# The default model is the best seed model on emoji's test split, once one beats `dual`: GPLDAN
# tuned for search beats it on rsum, R@5, R@10 and MAP over 5 seeds (benchmarks/results/gpldan.md).
DEMO_CONFIG = "gpldan/emoji-search"
MARKER = "demo.json"  # what makes a folder a demo run: --out may replace it, and nothing else


@dataclass
class DemoResult:
    title: str
    table: str
    metrics: dict
    text_queries: list[TextQuery]
    image_queries: list[ImageQuery]
    report: Path
    reused: bool
    best_epoch: int
    seconds: float
    index: Path | None = None  # the search index of the test split
    example_text: str = ""


def demo_config(model: str | None = None, config: str | Path | None = None) -> Path:
    """``--config`` (a file or a shipped name), else ``MODEL/emoji``, else the default model's config.

    Checked here, before any data are fetched, so a typo fails at once.
    """
    if config is not None:
        return find_config(config)
    return find_config(f"{model}/emoji" if model else DEMO_CONFIG)


def demo_run_config(config_path: Path, source: Path | None, overrides: list[str]) -> RunConfig:
    """The config with its data path resolved: the emoji data are fetched; other datasets need a path."""
    if source is not None and not Path(source).exists():
        raise XmodalError(f"--path {source} does not exist")
    dataset = read_config(config_path).get("data", {}).get("dataset")
    paths = []
    if dataset == "emoji":
        paths = [f"data.path={fetch_emoji(source)}"]
    elif source is not None:
        paths = [f"data.path={source}"]
    return with_resolved_paths(load_config(config_path, [*paths, *overrides]))


def run_demo(out: Path, source: Path | None = None, config_path: Path | None = None,
             overrides: list[str] | None = None, queries: int = 5, *, retrain: bool = False) -> DemoResult:
    started = time.perf_counter()
    config_path = config_path or demo_config()
    config = demo_run_config(config_path, source, overrides or [])
    dataset_name = config.data.dataset
    logger.info("config: %s (model %s on %s)", config_path, config.model.name, dataset_name)
    fingerprint = dataset_of(config).fingerprint()
    stamp = {"config": dump_config(config), "data": fingerprint}
    reused = not retrain and _finished_demo(out) == stamp
    if reused:
        logger.info("reusing the trained run in %s: same config and data (--retrain to train again)", out)
    else:
        _clear_demo_folder(out)
        result = train_config(config, out)
        logger.info("trained %s: %d epochs, best validation %s %.2f at epoch %d (%.0f s so far)", config.model.name,
                    result.epochs_run, result.metric, result.best_metric, result.best_epoch,
                    time.perf_counter() - started)
        atomic_write_bytes(out / MARKER, json.dumps(stamp).encode())
    trained = load_run(out)
    run = trained.run
    split = run.data.split("test")
    with torch.no_grad():
        images, texts = encode_split(run.model, split, run.device)
        metrics = evaluate_encoded(run.model, images, texts, GroundTruth.of(split), **eval_settings(run.config.eval))
        scores = score_matrix(run.model, images, texts).cpu()
    table = format_table(metrics)
    text_queries, image_queries = example_queries(run, split, scores, queries)
    attention = attention_views(run, split, images, texts, text_queries)
    title = f"xmodal demo: {config.model.name} on {dataset_name}"
    best_epoch = int(_best_epoch(out))
    curves = out / "curves.png"
    page = render_report(title, table, text_queries, image_queries,
                         notes=f"run folder: {out}; test split: {split.n_items} images, {split.n_texts} texts; "
                               f"checkpoint kept: epoch {best_epoch} (best validation {run.metric})",
                         curves_png=curves.read_bytes() if curves.is_file() else None,
                         config_text=dump_config(run.config), attention=attention)
    report = out / "report.html"
    write_report(report, page)
    index = build_demo_index(out, trained)
    return DemoResult(f"{title}, test split ({split.n_items} images, {split.n_texts} texts)", table, metrics,
                      text_queries, image_queries, report, reused, best_epoch, time.perf_counter() - started,
                      index, text_queries[0].text if text_queries else "a dog")


def build_demo_index(out: Path, run: TrainedRun) -> Path:
    """The search index of the run's test split in ``out/index``, kept while the checkpoint is unchanged."""
    folder = out / "index"
    if (folder / "CURRENT").is_file():
        try:
            built = read_manifest(folder)[1]["run"]["sha256"]
        except XmodalError:
            built = None
        if built == checkpoint_digest(out / "checkpoints" / "best.pt"):
            logger.info("reusing the search index in %s: same checkpoint", folder)
            return folder
    SearchIndex.build(run, read_collection("split:test", lambda: run.dataset), folder, overwrite=True)
    logger.info("built the search index of the test split in %s", folder)
    return folder


@torch.no_grad()
def attention_views(run: Run, split: SplitData, images: Rep, texts: Rep,
                    text_queries: list[TextQuery]) -> list[AttentionView]:
    """The model's attention (``explain``) behind each text query's first-ranked image."""
    rows = {run.dataset.items[index].id: row for row, index in enumerate(split.item_indices)}
    views = []
    for query in text_queries:
        top, row, j = query.results[0][0], rows[query.results[0][0].id], query.row
        attention = run.model.explain(take(images, slice(row, row + 1)), take(texts, slice(j, j + 1)))
        views.append(AttentionView(query.text, top, label_words(attention, query.text)))
    return views


def format_demo(result: DemoResult) -> str:
    """What `xmodal demo` prints: the metrics, then each example query's top results (* = a true match)."""
    lines = [result.title, result.table, ""]
    for query in result.text_queries:
        shown = ", ".join(f"{'*' if hit else ''}{item_label(item)}" for item, _, hit in query.results)
        lines.append(f"text  '{query.text}' -> {shown}")
    for query in result.image_queries:
        shown = " | ".join(f"{'*' if hit else ''}{text}" for text, _, hit in query.results[:3])
        lines.append(f"image [{item_label(query.item)}] -> {shown}")
    reused = " (reused the trained run)" if result.reused else ""
    lines.append(f"\n(* = a true match)  report: {result.report}  total {result.seconds:.1f} s{reused}")
    if result.index is not None:
        lines += [f"\nsearch the test split ({result.index}):",
                  f"  xmodal search {result.index} --text {shlex.quote(result.example_text)}",
                  f"  xmodal serve {result.index}    # then open http://127.0.0.1:8000/"]
    return "\n".join(lines)


def _finished_demo(out: Path) -> dict | None:
    marker = out / MARKER
    if not marker.is_file() or not (out / "checkpoints" / "best.pt").is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _clear_demo_folder(out: Path) -> None:
    """Remove an earlier demo run; refuse a folder that is not one (it may hold someone's work)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise XmodalError(f"--out {out} is a file; give a folder for the demo run")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise XmodalError(f"--out {out} exists and is not a demo run (no {MARKER}); the demo replaces its folder, "
                          "so choose another --out or empty this one")
    shutil.rmtree(out)


def _best_epoch(out: Path) -> int:
    return load_checkpoint(out / "checkpoints" / "best.pt")["best_epoch"]


def example_queries(run: Run, split: SplitData, scores: torch.Tensor, n: int,
                    top: int = 5) -> tuple[list[TextQuery], list[ImageQuery]]:
    """``n`` test texts ranked against the test images, and ``n`` test images against the test texts.

    The queries are spread evenly over the test split, so every one of them has its match among
    the candidates ranked; ``scores`` is the split's ``[images, texts]`` matrix.
    """
    items = [run.dataset.items[i] for i in split.item_indices]
    texts = [text if isinstance(text, str) else f"{item.id} (text features)" for item in items for text in item.texts]
    picked = np.linspace(0, len(items) - 1, min(n, len(items))).astype(int).tolist()
    first_text = {int(position): j for j, position in reversed(list(enumerate(split.text_items)))}
    text_queries = []
    for i in picked:
        j = first_text[i]
        order = torch.argsort(scores[:, j], descending=True, stable=True)[:top]
        text_queries.append(TextQuery(texts[j], [(items[r], float(scores[r, j]), int(split.text_items[j]) == r)
                                                 for r in order.tolist()], row=j))
    image_queries = []
    for i in picked:
        order = torch.argsort(scores[i], descending=True, stable=True)[:top]
        image_queries.append(ImageQuery(items[i], [(texts[j], float(scores[i, j]), int(split.text_items[j]) == i)
                                                   for j in order.tolist()]))
    return text_queries, image_queries
