"""Speed of scoring, two-stage search, training and feature extraction, as ratios measured in one run.

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks speed \\
        [--parts matmul similarity training two-stage extraction field] [--device cpu|cuda] \\
        [--two-stage-run RUN_DIR] [--out benchmarks/results/speed]

Writes ``OUT/<machine>.md`` (one file per machine: this CPU, a GPU when one is lent) and
rebuilds ``benchmarks/SPEED.md`` from every machine's file, so a GPU run adds its section beside the
CPU's. ``--parts`` re-measures only those parts: the others keep their record in
``OUT/<machine>.json`` with its date and its own matrix-product yardstick. Every figure of a part
is measured in the same process, one timing after the other, so the ratios (batched against a
pair-by-pair loop, a model's FLOP/s against the machine's own matrix product, the pipeline against
the bare encoder) hold even where the machine is shared.

Parts:

- ``matmul``: the machine's own fp32 matrix-product rate (and bf16 on a GPU), the yardstick.
- ``similarity``: every registered model built from its default config, fed synthetic inputs of
  the real shapes (EfficientNet-Lite0 1280-d vectors and 7 x 7 or 14 x 14 grids, MiniLM 384-d
  tokens, GloVe 50-d word ids, the 2,000-word graph); pairs/s of the batched ``similarity``
  over evaluation's blocks (:func:`xmodal.eval.protocol.score_matrix`), its FLOP/s (matrix
  products counted by :class:`torch.utils.flop_counter.FlopCounterMode`), a one-pair loop, and the
  time of a full 1,000 images x 5,000 texts matrix.
- ``training``: optimiser steps of each trainable model on a synthetic batch of its config's
  size, through the trainer's own :func:`xmodal.training.trainer.optimizer_step` (and, on a GPU,
  its bf16 autocast).
- ``two-stage``: a trained pairwise run's first stage + rerank of K in {10, 100} candidates
  against exhaustive scoring, over every image and caption of its dataset (Flickr8k-1k: 1,000
  photos x 5,000 captions), with the R@10 it keeps.
- ``extraction``: :mod:`benchmarks.speed_extraction` (images/s of the feature pipeline against the
  bare encoder forward pass).
- ``field``: :mod:`benchmarks.speed_field` (every model at Flickr30K's and COCO's sizes: step and
  epoch time, evaluation time at 1K x 5K and 5K x 25K, peak memory; not in the default parts).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.plan import REPO, speed_config
from xmodal.config import RunConfig, load_config
from xmodal.encoders.objects import ObjectProxies
from xmodal.eval.protocol import score_matrix
from xmodal.features.inputs import make_spec
from xmodal.features.kinds import ExampleDims, InputKind, get_kind
from xmodal.models.base import Batch, EmbeddingModel, Rep, RetrievalModel, concat_rows, take
from xmodal.models.registry import create_model, model_classes, model_params
from xmodal.training.trainer import make_optimizers, optimizer_step, training_autocast

logger = logging.getLogger("speed")

N_IMAGES, N_TEXTS = 1000, 5000  # the full matrix the issue asks for (Flickr8k-1k's size)
TEXT_LENGTH = 16  # padded words per text (Flickr8k captions average about 12)
TIME_BUDGET = 3.0  # seconds each timing aims at, so a slow model is measured on a smaller block


# -- machine -----------------------------------------------------------------------------------

def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "CPU")
    return f"{model}, {torch.get_num_threads()} torch threads"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(compute: Callable[[], object], device: torch.device, budget: float = TIME_BUDGET) -> float:
    """Seconds per call of ``compute``: one warm-up call, then as many calls as fit ``budget``."""
    compute()
    synchronise(device)
    calls, started = 0, time.perf_counter()
    while True:
        compute()
        calls += 1
        synchronise(device)
        elapsed = time.perf_counter() - started
        if elapsed >= budget or calls >= 1000:
            return elapsed / calls


def matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of one square matrix product (2 n^3 FLOPs), the machine's own yardstick."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / timed(lambda: a @ b, device)


# -- models on synthetic inputs of the real shapes ---------------------------------------------

def real_dims(side: str, kind: str, config: RunConfig) -> ExampleDims:
    """Shapes of ``kind`` as the real encoders give them (see the module docstring)."""
    grid = config.data.resolution // 32  # EfficientNet-Lite0's stride
    if side == "image":
        regions = ObjectProxies.count - 1 if kind == "objects" else grid * grid
        return ExampleDims(image_dim=1280, regions=regions, grid_side=grid)
    if kind in ("words", "bow"):  # GloVe 50-d; the graph's vertices are its vocabulary
        return ExampleDims(text_dim=50, vocab=config.data.graph_vertices if kind == "bow" else 20000,
                           length=TEXT_LENGTH)
    return ExampleDims(text_dim=384, length=TEXT_LENGTH)  # MiniLM sentence vector or token states


@dataclass
class Case:
    name: str
    config: RunConfig
    model: RetrievalModel
    make_images: Callable[[int, torch.Generator], Rep]
    make_texts: Callable[[int, torch.Generator], Rep]
    image_kinds: str
    text_kinds: str

    def inputs(self) -> str:
        return f"{self.image_kinds} / {self.text_kinds}"


def synthetic_maker(entries: list[tuple[InputKind, ExampleDims]]) -> Callable[[int, torch.Generator], Rep]:
    """A function making ``n`` synthetic items of one side: every kind's keys, at its real shapes."""
    def make(n: int, generator: torch.Generator) -> Rep:
        return {key: value for kind, dims in entries for key, value in kind.example(n, generator, dims).items()}
    return make


def input_kinds(config: RunConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The kinds the config's model reads, without its dataset: the config's own choice, else the
    model's preferred kind per part (what training picks when the dataset can feed it)."""
    cls, params = model_params(config.model.name, config.model.params)
    chosen = []
    for side in ("image", "text"):
        wanted = getattr(config.data, f"{side}_input")
        wanted = [wanted] if isinstance(wanted, str) else list(wanted or [])
        chosen.append(tuple(wanted[i] if wanted else part[0] for i, part in enumerate(cls.input_parts(side, params))))
    return chosen[0], chosen[1]


def build_case(name: str, device: torch.device, config_name: str | None = None,
               dims: Callable[[str, str, RunConfig], ExampleDims] = real_dims) -> Case:
    """The model of ``config_name`` (default: ``name``'s config for the largest benchmark dataset it has one
    for) with fresh weights (speed does not depend on them), and input makers of the shapes ``dims`` gives."""
    config = load_config(config_name or speed_config(name))
    kinds = input_kinds(config)
    generator = torch.Generator().manual_seed(0)
    specs, makers = {}, {}
    for side, names in zip(("image", "text"), kinds):
        entries = [(get_kind(side, kind), dims(side, kind, config)) for kind in names]
        specs[side] = {kind.name: kind.example_spec(dims, generator) for kind, dims in entries}
        makers[side] = synthetic_maker(entries)
    spec = make_spec(specs["image"], specs["text"], n_classes=10)
    torch.manual_seed(0)
    model = create_model(config.model.name, spec, config.model.params).to(device).eval()
    return Case(name, config, model, makers["image"], makers["text"], "+".join(kinds[0]), "+".join(kinds[1]))


@torch.no_grad()
def encode(case: Case, side: str, n: int, device: torch.device, block: int = 250) -> Rep:
    """``n`` encoded synthetic items of one side, made and encoded ``block`` at a time."""
    generator = torch.Generator().manual_seed(1 if side == "image" else 2)
    make, encoder = ((case.make_images, case.model.encode_images) if side == "image" else
                     (case.make_texts, case.model.encode_texts))
    parts = []
    for start in range(0, n, block):
        raw = make(min(block, n - start), generator)
        parts.append(encoder({key: value.to(device) for key, value in raw.items()}))
    return concat_rows(parts)


MATMUL_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::_addmm_activation"}


def time_breakdown(compute: Callable[[], object], device: torch.device) -> tuple[float, str, float]:
    """Share of ``compute``'s operator time spent in matrix products, and the costliest other operator
    with its share (torch.profiler, self time per operator)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        compute()
        synchronise(device)
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    times = {event.key: getattr(event, attribute) for event in profiler.key_averages()}
    total = sum(times.values()) or 1.0
    others = {key: value for key, value in times.items() if key not in MATMUL_OPS}
    top = max(others, key=others.get) if others else "-"
    return sum(times.get(key, 0.0) for key in MATMUL_OPS) / total, top, others.get(top, 0.0) / total


def counted_flops(compute: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        compute()
    return counter.get_total_flops()


@torch.no_grad()
def timing_block(model: RetrievalModel, images: Rep, texts: Rep, device: torch.device, most: int) -> tuple[Rep, int]:
    """(block of the first ``n`` images, ``n``): the smallest block, growing 4x up to ``most``, whose
    ``score_matrix`` against ``texts`` takes a sizeable part of the time budget."""
    n_images = 1
    while True:
        block = take(images, slice(0, n_images))
        started = time.perf_counter()
        score_matrix(model, block, texts)
        synchronise(device)
        if time.perf_counter() - started > TIME_BUDGET / 4 or n_images >= most:
            return block, n_images
        n_images = min(most, n_images * 4)


@torch.no_grad()
def similarity_row(case: Case, device: torch.device, machine_flops: float) -> dict:
    images, texts = encode(case, "image", N_IMAGES, device), encode(case, "text", N_TEXTS, device)
    model = case.model
    block_images, n_images = timing_block(model, images, texts, device, N_IMAGES)
    seconds = timed(lambda: score_matrix(model, block_images, texts), device)
    pairs = n_images * N_TEXTS
    flops = counted_flops(lambda: score_matrix(model, block_images, texts))
    matmul_share, top_other, top_share = time_breakdown(lambda: score_matrix(model, block_images, texts), device)
    # A loop of one-pair calls, as many as fit the budget's share.
    one_image, one_text = take(images, slice(0, 1)), take(texts, slice(0, 1))
    loop_seconds = timed(lambda: model.similarity(one_image, one_text), device, budget=TIME_BUDGET / 2)
    full = seconds * N_IMAGES / n_images
    return {"model": case.name, "inputs": case.inputs(), "kind": "cosine" if isinstance(model, EmbeddingModel)
            else "pairwise", "pairs_per_s": pairs / seconds, "flops_per_pair": flops / pairs,
            "flop_s": flops / seconds, "machine_share": flops / seconds / machine_flops,
            "loop_pairs_per_s": 1 / loop_seconds, "loop_ratio": loop_seconds * pairs / seconds,
            "full_matrix_s": full, "full_matrix_measured": n_images == N_IMAGES, "block_images": n_images,
            "matmul_time_share": matmul_share, "top_other_op": top_other, "top_other_share": top_share}


# -- training -----------------------------------------------------------------------------------

def training_row(case: Case, device: torch.device) -> dict | None:
    if not case.model.trainable:
        return None
    config, model = case.config, case.model
    batch_size = config.train.batch_size
    generator = torch.Generator().manual_seed(3)
    images, texts = case.make_images(batch_size, generator), case.make_texts(batch_size, generator)
    items = torch.arange(batch_size)
    labels = torch.nn.functional.one_hot(items % 10, 10).float()
    batch = Batch(images, texts, items, labels).to(device)
    model.train()
    optimizers = make_optimizers(model, config)
    autocast = training_autocast(config, device)  # bf16 on a GPU, as the trainer

    def step() -> None:
        with autocast:
            terms = model.loss(batch)
        optimizer_step(model, terms, optimizers, config.train.grad_clip)

    seconds = timed(step, device)
    model.eval()
    return {"model": case.name, "batch": batch_size, "steps_per_s": 1 / seconds, "items_per_s": batch_size / seconds}


# -- two-stage search against exhaustive scoring ------------------------------------------------

@torch.no_grad()
def two_stage_rows(run_dir: Path, device: torch.device, ks: tuple[int, ...] = (10, 100)) -> list[dict]:
    """Exhaustive scoring against two-stage search, direction by direction, over every split of a
    trained run's dataset. Exhaustive time is the full matrix's: a search in either direction
    scores every pair without a first stage."""
    from xmodal.eval.metrics import direction_metrics
    from xmodal.eval.protocol import encode_split
    from xmodal.eval.two_stage import two_stage_search
    from xmodal.trained import load_run

    run = load_run(run_dir, device=str(device)).run
    splits = [run.data.split(name) for name in ("train", "val", "test") if run.data.has_split(name)]
    encoded = [encode_split(run.model, split, device) for split in splits]
    images, texts = concat_rows([rep for rep, _ in encoded]), concat_rows([rep for _, rep in encoded])
    truth = torch.block_diag(*[split.ground_truth() for split in splits]).bool().to(device)
    n_images, n_texts = truth.shape

    def recall_at_10(scores: torch.Tensor, direction: str) -> float:
        return direction_metrics(scores, scores, truth)[direction]["r@10"]  # [n_images, n_texts] either way

    started = time.perf_counter()
    exhaustive = score_matrix(run.model, images, texts)
    synchronise(device)
    exhaustive_s = time.perf_counter() - started
    common = {"images": n_images, "texts": n_texts, "model": run.config.model.name, "run": str(run_dir)}
    rows = []
    for direction, gallery in (("i2t", f"{n_texts:,} texts"), ("t2i", f"{n_images:,} images")):
        base = recall_at_10(exhaustive, direction)
        rows.append(common | {"method": "exhaustive", "direction": direction, "gallery": gallery,
                              "seconds": exhaustive_s, "r10": base, "r10_exhaustive": base, "speedup": 1.0})
        for k in ks:
            started = time.perf_counter()
            result = two_stage_search(run.model, images, texts, k, direction)
            synchronise(device)
            seconds = time.perf_counter() - started
            rows.append(common | {"method": f"two-stage K = {k}", "direction": direction, "gallery": gallery,
                                  "seconds": seconds, "r10": recall_at_10(result.score_matrix(), direction),
                                  "r10_exhaustive": base, "speedup": exhaustive_s / seconds})
    return rows


# -- report ---------------------------------------------------------------------------------------

def _number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def similarity_table(rows: list[dict], machine_flops: float) -> list[str]:
    lines = [f"Matrix-product yardstick: {machine_flops / 1e9:,.1f} GFLOP/s (fp32, measured in the same run; a row "
             "measured on another date is a share of that day's yardstick).", "",
             "| model | inputs | score | batched pairs/s | MFLOP per pair | GFLOP/s | share of matmul | "
             "one-pair loop pairs/s | batched / loop | 1,000 x 5,000 matrix | time in matmul | costliest other op | "
             "measured |",
             "| --- " * 13 + "|"]
    for row in rows:
        full = f"{row['full_matrix_s']:,.2f} s" + ("" if row["full_matrix_measured"] else
                                                     f" (from {row['block_images']} images)")
        lines.append(f"| {row['model']} | {row['inputs']} | {row['kind']} | {_number(row['pairs_per_s'])} | "
                     f"{row['flops_per_pair'] / 1e6:,.3f} | {row['flop_s'] / 1e9:,.2f} | "
                     f"{row['machine_share']:.1%} | {_number(row['loop_pairs_per_s'])} | "
                     f"{row['loop_ratio']:,.0f}x | {full} | {row['matmul_time_share']:.0%} | "
                     f"`{row['top_other_op'].removeprefix('aten::')}` {row['top_other_share']:.0%} | "
                     f"{row.get('date', '-')} |")
    return lines


def training_table(rows: list[dict]) -> list[str]:
    lines = ["| model | batch (matching pairs) | steps/s | matching pairs/s | measured |", "| --- " * 5 + "|"]
    lines += [f"| {row['model']} | {row['batch']} | {row['steps_per_s']:.2f} | {_number(row['items_per_s'])} | "
              f"{row.get('date', '-')} |" for row in rows]
    return lines


def two_stage_table(rows: list[dict]) -> list[str]:
    first = rows[0]
    lines = [f"`{first['model']}` run `{first['run']}`: {first['images']:,} images x {first['texts']:,} texts "
             "(every split). Exhaustive: one score matrix serves both directions, and a search in either "
             "direction without a first stage has to compute all of it. The run trained on the train split, part of "
             "this gallery, so absolute recall is high; the share of exhaustive R@10 kept is the measure.", "",
             "| direction | gallery | ranking | seconds | exhaustive / this | R@10 | R@10 kept |", "| --- " * 7 + "|"]
    lines += [f"| {row['direction']} | {row['gallery']} | {row['method']} | {row['seconds']:,.2f} | "
              f"{row['speedup']:,.1f}x | {row['r10']:.1f} | {row['r10'] / row['r10_exhaustive']:.1%} |"
              for row in rows]
    return lines


def machine_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def _ran_on_gpu(recorded: Path) -> bool:
    results = json.loads(recorded.read_text())
    # records written before "device" was kept: only a GPU run measures the bf16 matrix product
    return results.get("device", "cuda" if results.get("matmul_bf16") is not None else "cpu") == "cuda"


def write_speed_index(out: Path, index: Path) -> None:
    """``SPEED.md``: a short preface, then every machine's section as its own run wrote it."""
    sections = [path.read_text().strip() for path in sorted(out.glob("*.md"))]
    preface = ("# Speed\n\nGenerated by `python -m benchmarks speed` (`benchmarks/speed.py`; its docstring says how "
               "each figure is measured); one section per machine, each from one run of the script on that machine, "
               "so the ratios within a section were measured side by side. Synthetic inputs have the real shapes; see "
               "the script.\n")
    if not any(_ran_on_gpu(path) for path in out.glob("*.json")):
        preface += ("\nEvery section is a CPU's: no GPU has run `bash benchmarks/gpu.sh` yet (it adds a section under "
                    "the GPU's name, with bf16 autocast, DDP and the exact index on the GPU), so these figures stand "
                    "alone.\n")
    index.write_text(preface + "\n" + "\n\n".join(sections) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["matmul", "similarity", "training", "two-stage", "extraction"],
                        choices=["matmul", "similarity", "training", "two-stage", "extraction", "field"])
    parser.add_argument("--models", nargs="+", default=list(model_classes()), choices=list(model_classes()))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--two-stage-run", type=Path, help="a trained pairwise run (e.g. jgcar on flickr8k)")
    parser.add_argument("--extraction-images", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "speed")
    parser.add_argument("--index", type=Path, default=REPO / "benchmarks" / "SPEED.md")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite the machine's .md and SPEED.md from its recorded JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = torch.device(args.device)
    machine = machine_name(device)
    slug = machine_slug(machine)
    recorded = args.out / f"{slug}.json"
    previous = json.loads(recorded.read_text()) if recorded.is_file() else {}
    if args.render_only:
        if not previous:
            parser.error(f"--render-only: nothing recorded for {machine!r} ({recorded} is missing; the machine "
                         "name counts torch threads, so set OMP_NUM_THREADS as the measuring run did)")
        results = previous
    else:  # parts not measured now keep their last record here, with its own date and yardstick
        results = {key: previous[key] for key in PART_TITLES if key in previous} | _measure(args, device, machine)
        for key in ("similarity", "training", "field"):  # and rows of models not measured now keep theirs
            if key in results and key in previous and results[key] is not previous[key]:
                results[key] = _with_earlier_rows(results[key], previous[key])
    sections = [f"## {machine}", "", f"torch {torch.__version__}, device `{device}`. fp32 matrix product "
                f"({'4,096' if device.type == 'cuda' else '1,024'}-square), measured {results['matmul_date']}: "
                f"{results['matmul_fp32'] / 1e9:,.1f} GFLOP/s."
                + (f" bf16: {results['matmul_bf16'] / 1e12:,.1f} TFLOP/s." if results.get("matmul_bf16") else "")]
    sections += _part_sections(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{slug}.json").write_text(json.dumps(results, indent=1))
    (args.out / f"{slug}.md").write_text("\n".join(sections) + "\n")
    write_speed_index(args.out, args.index)
    print("\n".join(sections))


def _with_earlier_rows(part: dict, earlier: dict) -> dict:
    """A part measured for some models, with the earlier record's rows of every other model (each row keeps
    the date it was measured on), in the registry's order."""
    measured = {row["model"] for row in part["rows"]}
    kept = [{"date": earlier["date"]} | row for row in earlier["rows"] if row["model"] not in measured]
    order = {name: index for index, name in enumerate(model_classes())}
    rows = sorted(kept + part["rows"], key=lambda row: order.get(row["model"], len(order)))
    return part | {"rows": rows}


def _measure(args: argparse.Namespace, device: torch.device, machine: str) -> dict:
    """The yardstick, then each part ``--parts`` names, each stamped with the date and yardstick."""
    fp32 = matmul_flops(device)
    measured = {"date": time.strftime("%Y-%m-%d"), "matmul_fp32": fp32}
    bf16 = matmul_flops(device, torch.bfloat16) if device.type == "cuda" else None
    results: dict[str, object] = {"machine": machine, "device": device.type, "matmul_fp32": fp32,
                                  "matmul_date": measured["date"], "matmul_bf16": bf16}
    cases = {}
    if "similarity" in args.parts or "training" in args.parts:
        cases = {name: build_case(name, device) for name in args.models}
    if "similarity" in args.parts:
        rows = []
        for name, case in cases.items():
            logger.info("similarity: %s", name)
            rows.append(similarity_row(case, device, fp32))
        results["similarity"] = measured | {"rows": [{"date": measured["date"]} | row for row in rows]}
    if "training" in args.parts:
        rows = [row for name, case in cases.items() if (row := training_row(case, device)) is not None]
        results["training"] = measured | {"rows": [{"date": measured["date"]} | row for row in rows]}
    if "two-stage" in args.parts and args.two_stage_run:
        results["two_stage"] = measured | {"rows": two_stage_rows(args.two_stage_run, device)}
    if "field" in args.parts:
        from benchmarks.speed_field import field_rows

        results["field"] = measured | {"rows": [{"date": measured["date"]} | row
                                                for row in field_rows(args.models, device)]}
    if "extraction" in args.parts:
        from benchmarks.speed_extraction import extraction_rows

        results["extraction"] = measured | {"rows": extraction_rows(args.extraction_images, device)}
    return results


PART_TITLES = {"similarity": "Scoring: batched `similarity` against a one-pair loop and the machine's matrix product",
               "training": "Training throughput (synthetic batch of the config's size; one optimiser step each)",
               "two_stage": "Two-stage search against exhaustive scoring",
               "extraction": "Feature extraction against the bare encoder forward pass",
               "field": "The field's sizes: Flickr30K and COCO training and evaluation, per model"}


# The targets (speed benchmark issue): pairwise scoring at half the machine's matrix-product
# FLOP/s, two-stage K = 100 keeping 99% of exhaustive R@10 in a twentieth of its time on a
# 5,000-text gallery, extraction at 80% of the bare forward pass.
FLOP_SHARE_GOAL, KEPT_GOAL, SPEEDUP_GOAL, EXTRACTION_GOAL = 0.5, 0.99, 20.0, 0.8


def goals_section(results: dict) -> list[str]:
    """One line per target: met or not, and for a miss the measured figure that limits it."""
    lines = []
    for row in results.get("similarity", {}).get("rows", []):
        if row["kind"] != "pairwise":
            continue
        share, other = row["machine_share"], f"`{row['top_other_op'].removeprefix('aten::')}`"
        if share >= FLOP_SHARE_GOAL:
            lines.append(f"- {row['model']}: pairwise scoring at {share:.0%} of the matrix product: met.")
        elif row["flops_per_pair"] < 1e5:  # a few kFLOP per pair: the [I, J] outputs' memory traffic dominates
            lines.append(f"- {row['model']}: {share:.0%} of the matrix product, not met: "
                         f"{row['flops_per_pair'] / 1e3:.1f} kFLOP per pair is too little arithmetic to hide the "
                         f"memory traffic of writing and copying pair tensors ({other} {row['top_other_share']:.0%} "
                         "of the time).")
        else:
            lines.append(f"- {row['model']}: {share:.0%} of the matrix product, not met: "
                         f"{row['matmul_time_share']:.0%} of the time is in matrix products, the rest mostly in "
                         f"{other} ({row['top_other_share']:.0%}), element-wise work the formula needs on every pair.")
    for row in results.get("two_stage", {}).get("rows", []):
        if "K = 100" in row["method"] and row["gallery"].endswith("texts"):
            kept = row["r10"] / row["r10_exhaustive"]
            met = kept >= KEPT_GOAL and row["speedup"] >= SPEEDUP_GOAL
            lines.append(f"- two-stage K = 100 over {row['gallery']}: {kept:.1%} of exhaustive R@10 in 1/"
                         f"{row['speedup']:.1f} of its time: {'met' if met else 'not met'}.")
    for row in results.get("extraction", {}).get("rows", []):
        met = row["ratio"] >= EXTRACTION_GOAL
        lines.append(f"- extraction, {row['source']}: {row['ratio']:.0%} of the bare forward pass: "
                     + ("met." if met else f"not met: decoding costs {1 / row['pipeline'] - 1 / row['bare']:.3f} s "
                        "an image beside the forward pass, on cores the forward pass also uses."))
    return ["", "### Against the targets", "", *lines] if lines else []


def _part_sections(results: dict) -> list[str]:
    from benchmarks.speed_extraction import extraction_table
    from benchmarks.speed_field import field_table

    tables = {"similarity": lambda part: similarity_table(part["rows"], part["matmul_fp32"]),
              "training": lambda part: training_table(part["rows"]),
              "two_stage": lambda part: two_stage_table(part["rows"]),
              "extraction": lambda part: extraction_table(part["rows"]),
              "field": lambda part: field_table(part["rows"])}
    sections = []
    for key, title in PART_TITLES.items():
        if key in results:
            part = results[key]
            dates = sorted({row.get("date", part["date"]) for row in part.get("rows", [])} | {part["date"]})
            when = dates[0] if len(dates) == 1 else f"rows of {', '.join(dates)}"
            sections += ["", f"### {title} (measured {when})", "", *tables[key](part)]
    return sections + goals_section(results)
