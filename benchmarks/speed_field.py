"""Training and evaluation cost at the field's sizes (issue 31): ``python -m benchmarks speed --parts field``.

Every registered model, built from its paper config where it has one (``<model>/flickr8k-paper``,
else ``<model>/emoji-paper``, else the config the speed benchmark uses), is fed synthetic inputs of
the shapes the papers' Flickr30K and COCO rows read: 36 x 2048 bottom-up region features per
image (SCAN's precomputed files; the ``global`` kind is their mean, ``objects`` the same 36
regions) and captions of 16 words (MiniLM token states, or GloVe word ids over an 11,000-word
vocabulary). Per model, in a child process of its own so that its peak memory is its own:

- **training**: seconds per optimiser step at the config's batch size (the trainer's own
  ``optimizer_step``), and per epoch = step x batches of an epoch, which runs over captions
  (Flickr30K: 145,000; COCO: 566,435 training captions);
- **evaluation**: batched ``similarity`` pairs/s over blocks of 1,000 encoded texts, and from it
  the seconds of a 1K x 5K matrix (Flickr30K's test split, a COCO 1K fold) exhaustive and two-stage
  K = 100 (K x (images + texts) reranked pairs), and of COCO's 5K x 25K two-stage K = 100 and
  exhaustive; the memory the encoded test set needs (bytes per encoded item, measured, times the
  items);
- **peak memory**: the child's peak resident set (``ru_maxrss``; CUDA: ``max_memory_allocated``),
  once after the training steps and once after the evaluation block, each in its own child.

The evaluation seconds are extrapolated from the measured pairs/s (every pair costs the same), and
an epoch from the measured step: the table says so. Run where a GPU is lent with ``--device cuda``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys

import torch

from xmodal.config import RunConfig
from xmodal.features.kinds import ExampleDims
from xmodal.models.registry import model_classes

REGIONS, REGION_DIM, VOCAB = 36, 2048, 11000
TRAIN_CAPTIONS = {"Flickr30K": 145_000, "COCO": 566_435}
K = 100
# (label, images, texts, ranking): the evaluations the papers report.
EVALUATIONS = [("1K x 5K exhaustive", 1000, 5000, "exhaustive"), ("1K x 5K two-stage", 1000, 5000, "two-stage"),
               ("5K x 25K two-stage", 5000, 25000, "two-stage"), ("5K x 25K exhaustive", 5000, 25000, "exhaustive")]
TEXT_BLOCK = 1000
IMAGE_BLOCK = 64  # the most images one timed block of scoring holds


def field_dims(side: str, kind: str, config: RunConfig) -> ExampleDims:
    """The papers' shapes: 36 x 2048 regions per image; the text encoders xmodal ships, 16 words."""
    from benchmarks.speed import TEXT_LENGTH, real_dims

    if side == "image":
        return ExampleDims(image_dim=REGION_DIM, regions=REGIONS, grid_side=None)
    if kind == "words":
        return ExampleDims(text_dim=50, vocab=VOCAB, length=TEXT_LENGTH)
    return real_dims(side, kind, config)


def field_config(model: str) -> str:
    from benchmarks.plan import speed_config
    from xmodal.config import list_configs

    configs = list_configs()
    return next((f"{model}/{name}" for name in ("flickr8k-paper", "emoji-paper") if f"{model}/{name}" in configs),
                None) or speed_config(model)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure_training(model: str, device: torch.device) -> dict:
    from benchmarks.speed import build_case, training_row

    case = build_case(model, device, field_config(model), field_dims)
    row = training_row(case, device)
    if row is None:
        return {"trainable": False, "peak_bytes": peak_bytes(device)}
    return {"trainable": True, "batch": row["batch"], "step_s": 1 / row["steps_per_s"],
            "peak_bytes": peak_bytes(device)}


@torch.no_grad()
def measure_evaluation(model: str, device: torch.device) -> dict:
    from benchmarks.speed import build_case, encode, timed, timing_block
    from xmodal.eval.protocol import score_matrix
    from xmodal.models.base import EmbeddingModel, take

    case = build_case(model, device, field_config(model), field_dims)
    images, texts = encode(case, "image", IMAGE_BLOCK, device), encode(case, "text", TEXT_BLOCK, device)
    block, n_images = timing_block(case.model, images, texts, device, IMAGE_BLOCK)
    seconds = timed(lambda: score_matrix(case.model, block, texts), device)
    return {"pairs_per_s": n_images * TEXT_BLOCK / seconds, "score": "cosine" if isinstance(case.model, EmbeddingModel)
            else "pairwise", "image_bytes": rep_bytes(take(images, slice(0, 1))),
            "text_bytes": rep_bytes(take(texts, slice(0, 1))), "config": field_config(model),
            "inputs": case.inputs(), "peak_bytes": peak_bytes(device)}


def rep_bytes(rep: dict) -> int:
    return sum(value.numel() * value.element_size() for value in rep.values())


def child(model: str, what: str, device: str) -> dict:
    """Run one measurement in a fresh process (its peak memory is its own) and read its JSON; a model
    that cannot take these inputs gives ``{"error": its message}``."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed_field", model, what, device],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        return {"error": lines[-1].removeprefix("xmodal.errors.XmodalError: ")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def field_rows(models: list[str], device: torch.device) -> list[dict]:
    import logging

    rows = []
    for model in models:
        logging.getLogger("speed").info("field: %s", model)
        load = os.getloadavg()[0]  # other work on the machine slows every figure: said beside them
        training = child(model, "train", str(device))
        if "error" in training:
            rows.append({"model": model, "error": training["error"]})
            continue
        evaluation = child(model, "eval", str(device))
        if "error" in evaluation:
            rows.append({"model": model, "error": evaluation["error"]})
            continue
        rows.append({"model": model, "load": load} | evaluation | {"train_peak_bytes": training["peak_bytes"],
                                                    "eval_peak_bytes": evaluation["peak_bytes"]}
                    | {key: value for key, value in training.items() if key != "peak_bytes"})
    return rows


def evaluation_seconds(row: dict, images: int, texts: int, ranking: str) -> float:
    pairs = images * texts if ranking == "exhaustive" else K * (images + texts)
    return pairs / row["pairs_per_s"]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def field_table(rows: list[dict]) -> list[str]:
    loads = [row["load"] for row in rows if "load" in row]
    load = (f" The machine's 1-minute load average as each model was measured: {min(loads):.1f}-{max(loads):.1f} "
            f"on {os.cpu_count()} cores (above the core count, other jobs shared them and every time here is "
            "longer than an idle machine's).") if loads else ""
    lines = [f"Synthetic inputs of the papers' shapes ({REGIONS} x {REGION_DIM} regions per image, 16-word captions); "
             "each model from its paper config where it has one. Step: measured (the trainer's optimiser step at the "
             "config's batch). Epoch: the step times the batches of an epoch over the training captions "
             f"(Flickr30K {TRAIN_CAPTIONS['Flickr30K']:,}, COCO {TRAIN_CAPTIONS['COCO']:,}), extrapolated. "
             f"Evaluations: from the measured pairs/s of batched `similarity` over blocks of {TEXT_BLOCK:,} texts, "
             f"extrapolated; two-stage reranks K = {K} candidates per query both ways (K x (images + texts) pairs; its "
             "first stage, one cosine matrix, is left out). Encoded test set: the memory 5K images and 25K texts "
             "take once encoded (measured bytes per item). Peak: the measuring process's peak memory (resident set on "
             "the CPU), training and evaluation each in a process of its own." + load, "",
             "| model | config | inputs | batch | step | epoch Flickr30K | epoch COCO | "
             + " | ".join(label for label, *_ in EVALUATIONS) + " | encoded 5K + 25K | peak training | peak eval |",
             "| --- " * (10 + len(EVALUATIONS)) + "|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | - | cannot read these inputs: {row['error'].split(';')[0]} |"
                         + " |" * (7 + len(EVALUATIONS)))
            continue
        if row.get("trainable"):
            epochs = [_duration(row["step_s"] * math.ceil(captions / row["batch"]))
                      for captions in TRAIN_CAPTIONS.values()]
            training = [str(row["batch"]), f"{row['step_s']:,.2f} s", *epochs]
        else:
            training = ["-", "closed form", "-", "-"]
        evaluations = [_duration(evaluation_seconds(row, images, texts, ranking))
                       if ranking == "exhaustive" or row["score"] == "pairwise" else "-"
                       for _, images, texts, ranking in EVALUATIONS]
        encoded = (5000 * row["image_bytes"] + 25000 * row["text_bytes"]) / 2**30
        peaks = f"{row['train_peak_bytes'] / 2**30:,.2f} GiB | {row['eval_peak_bytes'] / 2**30:,.2f} GiB"
        lines.append(f"| {row['model']} | `{row['config']}` | {row['inputs']} | " + " | ".join(training) + " | "
                     + " | ".join(evaluations) + f" | {encoded:,.2f} GiB | {peaks} |")
    return lines


if __name__ == "__main__":
    model_name, what, device_name = sys.argv[1:4]
    if model_name not in model_classes():
        raise SystemExit(f"unknown model {model_name!r}")
    torch.manual_seed(0)
    measure = measure_training if what == "train" else measure_evaluation
    print(json.dumps(measure(model_name, torch.device(device_name))))
