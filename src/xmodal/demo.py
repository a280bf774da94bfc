"""`xmodal demo`: the main job on the built-in emoji dataset, end to end.

Fetch the data, extract features (cached), train the default model, evaluate it on the test
split, print the metrics and a few example queries both ways, and write an HTML report.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from xmodal.config import load_config
from xmodal.data.emoji import fetch_emoji
from xmodal.errors import XmodalError
from xmodal.eval.protocol import encode_split, eval_settings, evaluate_split, score_matrix
from xmodal.eval.report import format_table
from xmodal.features.inputs import SplitData
from xmodal.models.base import rep_to
from xmodal.report_html import ImageQuery, TextQuery, render_report, write_report
from xmodal.train.setup import load_trained
from xmodal.train.trainer import train

# The default model is the best seed model on emoji's test split, once one beats `dual`: GPLDAN
# tuned for search beats it on rsum, R@5, R@10 and MAP over 5 seeds (benchmarks/results/gpldan.md).
DEMO_CONFIG = "configs/gpldan/emoji-search.yaml"
EXAMPLE_TEXTS = ("red apple", "cat face", "airplane", "soccer ball", "japan flag")


def find_config(relative: str) -> Path:
    """A config shipped with the checkout, e.g. ``configs/dual/emoji.yaml``."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / relative
        if candidate.is_file():
            return candidate
    raise XmodalError(f"{relative} not found; run the demo from the xmodal checkout or pass --config")


def demo_config(model: str | None = None, config: Path | None = None) -> Path:
    """``--config`` as given, else ``configs/<model>/emoji.yaml``, else the default model's config."""
    if config is not None:
        if not config.is_file():  # checked here, not only by load_config: before the emoji fetch
            raise XmodalError(f"{config}: no such config file")
        return config
    return find_config(f"configs/{model}/emoji.yaml" if model else DEMO_CONFIG)


def run_demo(out: Path, source: Path | None = None, config_path: Path | None = None,
             overrides: list[str] | None = None, queries: int = 5) -> dict:
    started = time.perf_counter()
    root = fetch_emoji(source)
    print(f"data: {root}")
    config_path = config_path or demo_config()
    config = load_config(config_path, [f"data.path={root}", *(overrides or [])])
    model = config.model.name
    print(f"config: {config_path}")
    if out.exists():
        shutil.rmtree(out)  # the demo's own folder: every demo is a fresh run
    result = train(config, out)
    print(f"trained {model}: {result.epochs_run} epochs, best validation {result.metric} "
          f"{result.best_metric:.2f} at epoch {result.best_epoch} ({time.perf_counter() - started:.0f} s so far)")
    run = load_trained(out)
    split = run.data.split("test")
    metrics = evaluate_split(run.model, split, run.device, **eval_settings(config.eval))
    table = format_table(metrics)
    print(f"\n{model} on emoji, test split ({split.n_items} images, {split.n_texts} texts)\n{table}\n")
    text_queries, image_queries = example_queries(run, split, queries)
    for query in text_queries:
        shown = ", ".join(f"{'*' if hit else ''}{item.texts[0]}" for item, _, hit in query.results)
        print(f"text  '{query.text}' -> {shown}")
    for query in image_queries:
        shown = " | ".join(f"{'*' if hit else ''}{text}" for text, _, hit in query.results[:3])
        print(f"image [{query.item.texts[0]}] -> {shown}")
    report = out / "report.html"
    write_report(report, render_report(f"xmodal demo: {model} on emoji", table, text_queries, image_queries,
                                       notes=f"run folder: {out}"))
    print(f"\n(* = a true match)  report: {report}  total {time.perf_counter() - started:.0f} s")
    return metrics


def example_queries(run, split: SplitData, n: int, top: int = 5) -> tuple[list[TextQuery], list[ImageQuery]]:
    """Free-text queries typed by a person, and a few test images ranked against test texts."""
    items = [run.dataset.items[i] for i in split.item_indices]
    texts = [text for item in items for text in item.texts]
    with torch.no_grad():
        images, split_texts = encode_split(run.model, split, run.device)
        free = run.model.encode_texts(rep_to(run.data.encode_new_texts(list(EXAMPLE_TEXTS[:n])), run.device))
        text_scores = score_matrix(run.model, images, free).T.cpu()  # [queries, images]
        image_scores = score_matrix(run.model, images, split_texts).cpu()  # [images, texts]
    text_queries = []
    for q, query in enumerate(EXAMPLE_TEXTS[:n]):
        order = torch.argsort(text_scores[q], descending=True, stable=True)[:top]
        text_queries.append(TextQuery(query, [(items[i], float(text_scores[q, i]),
                                               query in items[i].texts[0]) for i in order.tolist()]))
    image_queries = []
    for i in np.linspace(0, len(items) - 1, n).astype(int).tolist():
        order = torch.argsort(image_scores[i], descending=True, stable=True)[:top]
        image_queries.append(ImageQuery(items[i], [(texts[j], float(image_scores[i, j]),
                                                    int(split.text_items[j]) == i) for j in order.tolist()]))
    return text_queries, image_queries
