"""Every quality table from one command: each registered model and its papers' ablation variants,
on every dataset it has a config for, over seeds, resumable.

    PYTHONPATH=src .venv/bin/python -m benchmarks.quality [--quick] [--runs runs/quality] \\
        [--seeds 0 1 2] [--datasets emoji flickr8k ...] [--models jgcar scanet ...] \\
        [--dataset NAME=PATH ...] [--reuse DIR ...]

Each arm of :data:`PLAN` trains its config with the run's seed into ``RUNS/<dataset>/<arm>-s<seed>``
and evaluates the test split the way ``xmodal eval`` does (the config's own protocol: exhaustive
scoring, or two-stage where the config sets ``eval.shortlist``); a run whose ``test.json`` exists is
not trained again, so an interrupted run resumes. Then it writes

- ``benchmarks/RESULTS.md``: one table per dataset (MAP@all, MAP@50, R@1/5/10, rsum as the data
  allow; mean ± std over the seeds that ran), the encoder substitutions, links to the per-model
  result files;
- ``benchmarks/REPRODUCTION.md``: each paper's headline tables as published beside ours, with
  which of the paper's orderings hold here (:mod:`benchmarks.papers`).

``--quick`` is a smoke run: one seed, one epoch, the default arm of each model (no ablations), and
its report goes to ``RUNS/QUICK.md`` instead of the committed files. ``--dataset NAME=PATH`` adds a
dataset read from PATH, NAME a registry name (``xmodal.list_datasets()``; ``csv``, ``jsonl`` or ``folder`` for
a user's collection), with every model's emoji config; an arm that cannot run on it (a model that
needs labels the data lack) is reported as failed in its row. ``--reuse DIR`` takes finished runs
that other benchmark scripts trained with exactly an arm's config (their ``--out`` folders) instead
of training them again; the report counts them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import EarlierRuns, mean_std, train_and_measure

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
logger = logging.getLogger("quality")

DATA = {"wikipedia-features": SHARED / "wikipedia", "wikipedia-texts": SHARED / "wikipedia",
        "emoji": SHARED / "emoji", "flickr8k": SHARED / "flickr8k-1k"}
# What the stand-in encoders replace, for the notes under the tables.
ENCODERS = ("Images: EfficientNet-Lite0 (ImageNet) pooled 1,280-d vector or its 7 x 7 (224 px) / 14 x 14 (448 px) "
            "grid, for the papers' VGG-16/19 and Faster R-CNN features; on wikipedia-* the benchmark's own 128-d "
            "SIFT histograms. Texts: MiniLM-L6 sentence vectors or token states for the papers' BERT / learned "
            "embeddings, GloVe 6B 50-d for word2vec / 300-d vectors, a GloVe word graph for SCANet's word2vec graph "
            "(10,055 words on wikipedia-texts as in the paper, 2,000 on emoji); on wikipedia-features the "
            "benchmark's 10-d LDA topics.")


@dataclass(frozen=True)
class Arm:
    """One table row: a config with overrides; ``ablation`` rows are left out of ``--quick``."""

    model: str  # the registered model, for --models
    row: str
    config: str
    overrides: tuple[str, ...] = ()
    ablation: bool = True


def _variants(model: str, config: str, names: dict[str, str], extra: dict[str, tuple[str, ...]] | None = None
              ) -> list[Arm]:
    """Arms of a model's named presets, ``names`` mapping preset to row name. A preset enters as
    ``model.params`` overrides (not ``model.name=<model>-<variant>``), since the configs set some of
    the same parameters to the default model's values."""
    from xmodal.models.registry import get_model_class

    presets = get_model_class(model).variants
    extra = extra or {}

    def value(setting: object) -> str:
        return str(setting).lower() if isinstance(setting, bool) else str(setting)

    return [Arm(model, row, config, (*(f"model.params.{key}={value(setting)}" for key, setting
                                       in presets[variant].items()), *extra.get(variant, ())))
            for variant, row in names.items()]


# SCANet's LSTM / CNN text models, cut to a CPU budget (benchmarks/results/scanet.md).
_SEQUENCE = ("data.text_input=words", "model.params.max_words=100", "model.params.sequence_dim=128", "train.epochs=10")
_SCANET = {"k0": "SCANet k = 0", "k1": "SCANet k = 1", "k3": "SCANet k = 3", "lstm": "LSTM text model, k = 2",
           "cnn": "CNN text model, k = 2"}
_GPLDAN = {"pdl": "L_pdl", "mdp": "+ L_mdp", "udp": "+ L_udp", "mdp-udp": "+ L_mdp + L_udp",
           "mdp-udp-mc": "+ L_mdp + L_udp + MC"}


def _baselines(dataset: str) -> list[Arm]:
    return [Arm("cca", "cca", f"cca/{dataset}", ablation=False), Arm("dual", "dual", f"dual/{dataset}", ablation=False)]


PLAN: dict[str, list[Arm]] = {
    "wikipedia-features": [*_baselines("wikipedia-features"),
                           Arm("gpldan", "GPLDAN", "gpldan/wikipedia-features", ablation=False),
                           *_variants("gpldan", "gpldan/wikipedia-features", _GPLDAN)],
    "wikipedia-texts": [*_baselines("wikipedia-texts"),
                        Arm("gpldan", "GPLDAN", "gpldan/wikipedia-texts", ablation=False),
                        Arm("scanet", "SCANet (GCN, k = 2)", "scanet/wikipedia-texts", ablation=False),
                        *_variants("scanet", "scanet/wikipedia-texts", _SCANET, {"lstm": _SEQUENCE, "cnn": _SEQUENCE})],
    "emoji": [*_baselines("emoji"),
              Arm("acln", "ACLN (shared attention)", "acln/emoji", ablation=False),
              *_variants("acln", "acln/emoji", {"baseline": "ACLN baseline (no attention)",
                                                "separate": "ACLN separate attention"}),
              Arm("gpldan", "GPLDAN", "gpldan/emoji", ablation=False),
              *_variants("gpldan", "gpldan/emoji", _GPLDAN),
              Arm("scanet", "SCANet (GCN, k = 2)", "scanet/emoji", ablation=False),
              *_variants("scanet", "scanet/emoji", _SCANET, {"lstm": _SEQUENCE, "cnn": _SEQUENCE}),
              Arm("jgcar", "JGCAR", "jgcar/emoji-cpu", ("data.text_input=tokens",), ablation=False),
              *_variants("jgcar", "jgcar/emoji-cpu", {"grl": "GRL", "sgcar": "SGCAR", "v1": "JGCAR-v1",
                                                      "v2": "JGCAR-v2"},
                         dict.fromkeys(("grl", "sgcar", "v1", "v2"), ("data.text_input=tokens",))),
              Arm("bssan", "BSSAN (full)", "bssan/emoji", ablation=False),
              *_variants("bssan", "bssan/emoji", {"w2r": "W2R only", "o2w": "O2W only", "no_reg": "no regulariser"})],
    "flickr8k": [*_baselines("flickr8k"),
                 Arm("jgcar", "JGCAR-v1 (no labels: J2, J3 off)", "jgcar/flickr8k", ablation=False),
                 *_variants("jgcar", "jgcar/flickr8k", {"grl": "GRL", "sgcar": "SGCAR", "v2": "JGCAR-v2"}),
                 Arm("bssan", "BSSAN (full)", "bssan/flickr8k", ablation=False),
                 *_variants("bssan", "bssan/flickr8k", {"w2r": "W2R only", "o2w": "O2W only",
                                                        "no_reg": "no regulariser"})],
}


@dataclass
class Rows:
    """The finished runs of one dataset, arm by arm, in plan order."""

    dataset: str
    runs: dict[Arm, list[dict]] = field(default_factory=dict)


def measure(run_dir: Path) -> dict:
    """The test metrics as ``xmodal eval`` gives them. A run whose data fingerprint changed while every
    item it recorded is still there (shared data copied anew: new file times) is evaluated on those
    items, and the result says so; any other change is an error, as in ``xmodal eval``."""
    from xmodal.api import evaluate, load_run
    from xmodal.errors import DataChangedError

    started = time.perf_counter()
    note = {}
    try:
        run = load_run(run_dir)
    except DataChangedError as error:
        if not error.same_items:
            raise
        run, note = load_run(run_dir, allow_changed=True), {"data_changed": str(error).split(";")[0]}
    metrics = evaluate(run)
    return metrics | note | {"eval_seconds": time.perf_counter() - started}


def arms_for(dataset: str, models: set[str] | None, quick: bool) -> list[Arm]:
    """The plan's arms for ``dataset``; a dataset outside the plan gets every model's emoji arms."""
    arms = PLAN.get(dataset)
    if arms is None:
        arms = [Arm(arm.model, arm.row, arm.config, (*arm.overrides, f"data.dataset={dataset}"), arm.ablation)
                for arm in PLAN["emoji"]]
    return [arm for arm in arms if (models is None or arm.model in models) and not (quick and arm.ablation)]


def run_dataset(dataset: str, path: Path, arms: list[Arm], seeds: list[int], runs: Path,
                extra: tuple[str, ...], earlier: EarlierRuns | None = None, report_only: bool = False) -> Rows:
    rows = Rows(dataset)
    for seed in seeds:  # seed by seed, so an interrupted run still has every arm
        for arm in arms:
            slug = arm.row.lower().translate(str.maketrans(" ,=()/:", "-------")).replace("--", "-").strip("-")
            run_dir = runs / dataset / f"{slug}-s{seed}"
            if report_only:  # the finished runs only: a row counts the seeds it has
                done = run_dir / "test.json"
                rows.runs.setdefault(arm, []).extend([json.loads(done.read_text())] if done.is_file() else [])
                continue
            overrides = [f"data.path={path}", f"train.seed={seed}", *arm.overrides, *extra]
            logger.info("%s / %s / seed %d", dataset, arm.row, seed)
            try:
                result = train_and_measure(REPO / "configs" / f"{arm.config}.yaml", run_dir, overrides, measure,
                                           earlier)
            except Exception as error:  # a broken arm is reported in its row, the others still run
                logger.error("%s / %s / seed %d failed: %s", dataset, arm.row, seed, error)
                result = {"error": str(error)}
            rows.runs.setdefault(arm, []).append(result)
    return rows


def _cell(runs: list[dict], direction: str, key: str) -> str:
    """mean ± std of one metric over runs: MAP to 3 decimals, recall (already in %) and rsum to 1."""
    values = [run[direction][key] if direction else run[key] for run in runs if not direction or key in run[direction]]
    return mean_std(values, digits=3 if key.startswith("map") else 1) if values else "-"


def dataset_table(rows: Rows) -> list[str]:
    """One markdown table: the columns the dataset's runs have (MAP when labelled, recall always)."""
    finished = [run for runs in rows.runs.values() for run in runs if "error" not in run]
    labelled = any("map" in run["i2t"] for run in finished)
    columns = [("i2t", "map", "MAP@all i2t"), ("t2i", "map", "MAP@all t2i"), ("i2t", "map@50", "MAP@50 i2t"),
               ("t2i", "map@50", "MAP@50 t2i")] if labelled else []
    columns += [(d, f"r@{k}", f"R@{k} {d}") for d in ("i2t", "t2i") for k in (1, 5, 10)] + [("", "rsum", "rsum")]
    lines = ["| model | seeds | " + " | ".join(name for *_, name in columns) + " | train + eval s |",
             "| --- " * (len(columns) + 3) + "|"]
    for arm, runs in rows.runs.items():
        good = [run for run in runs if "error" not in run]
        seconds = [run["train_seconds"] + run["eval_seconds"] for run in good]
        cells = [_cell(good, d, key) for d, key, _ in columns]
        failed = len(runs) - len(good)
        seeds = f"{len(good)}" + (f" ({failed} failed)" if failed else "")
        spent = mean_std(seconds, digits=0) if seconds else "-"
        lines.append(f"| {arm.row} | {seeds} | " + " | ".join(cells) + f" | {spent} |")
    return lines


# The per-model benchmark files: what RESULTS.md's tables do not show (diagnoses, speed, sweeps).
DETAILS = [("baselines (`cca`, `dual`)", "results/baselines.md", "benchmarks/baselines.py"),
           ("ACLN Table 2, attention entropy", "results/acln.md", "benchmarks/acln.py"),
           ("SCANet layers, text models, scoring speed, word graph", "results/scanet.md", "benchmarks/scanet.py"),
           ("JGCAR diagnosis, rerank against its first stage, Flickr8k", "results/jgcar.md",
            "benchmarks/jgcar.py, benchmarks/jgcar_diagnose.py"),
           ("BSSAN variants, eq. 8 diagnosis, two-stage search", "results/bssan.md", "benchmarks/bssan.py"),
           ("GPLDAN Table 3, alpha/beta grid, GPLDAN for search", "results/gpldan.md", "benchmarks/gpldan.py"),
           ("text kinds: word graph and TF-IDF", "results/text-kinds.md", "benchmarks/text_kinds.py"),
           ("feature cache reuse", "results/cache.md", "benchmarks/cache_reuse.py"),
           ("search engine: API, load, updates, index backends at 1M vectors", "results/search.md",
            "benchmarks/search.py"),
           ("speed: scoring FLOP/s, two-stage, training, extraction", "SPEED.md", "benchmarks/speed.py")]


def results_report(all_rows: list[Rows], seeds: list[int], wall: float, quick: bool,
                   report_only: bool = False) -> list[str]:
    finished = [run for rows in all_rows for arm_runs in rows.runs.values() for run in arm_runs if "error" not in run]
    spent = sum(run["train_seconds"] + run["eval_seconds"] for run in finished) / 3600
    if report_only:
        took = (f"Written by `--report-only` from the {len(finished)} runs finished so far ({spent:.1f} hours of "
                "training and evaluation); a row with fewer seeds than the others is still to be run.")
    else:
        took = (f"This run took {wall / 60:.1f} minutes (finished runs are reused, so a resumed run is quicker "
                f"than training everything); its {len(finished)} runs took {spent:.1f} hours to train and evaluate.")
    lines = ["# Results" + (" (quick smoke run: one epoch, one seed, default arms)" if quick else ""), "",
             "Generated by `python -m benchmarks.quality" + (" --quick" if quick else "") + "` on this project's "
             f"2-core CPU machine: test split of each dataset, mean ± std over seeds {', '.join(map(str, seeds))} "
             f"(the seeds column counts the runs behind each row). {took} MAP@all / MAP@50 are "
             "label-based (an item is relevant when it shares a category); R@k are instance recall in %, rsum their "
             "sum over both directions. Each row trains its config under `configs/` as the script's PLAN names it; "
             "paper-faithful settings that do not fit the CPU budget live in the `-paper` configs beside them.", "",
             f"Encoders (stand-ins for the papers'): {ENCODERS}", ""]
    changed = sum("data_changed" in run for run in finished)
    if changed:
        lines += [f"{changed} runs were trained before their data's files were copied anew, when a run's data "
                  "fingerprint still recorded file times (it records their content now), so it changed while every "
                  "recorded item is still there: they were evaluated on the items they recorded, as `xmodal eval "
                  "--allow-changed` does.", ""]
    reused = sum("adopted_from" in run for run in finished)
    if reused:
        lines += [f"{reused} of the {len(finished)} runs were trained earlier by another benchmark script with exactly "
                  "the arm's config (`--reuse`); their checkpoints were evaluated by this run. Their train seconds are "
                  "as recorded then (or the sum of their epochs' seconds), under whatever load the machine had.", ""]
    for rows in all_rows:
        lines += [f"## {rows.dataset}", "", *dataset_table(rows), ""]
    lines += ["## Details per model", "", "| what | file | script |", "| --- | --- | --- |",
              *(f"| {what} | [{file}]({file}) | `{script}` |" for what, file, script in DETAILS), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, default arms; writes RUNS/QUICK.md")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--datasets", nargs="+", choices=list(PLAN), default=list(PLAN))
    parser.add_argument("--models", nargs="+", help="only these registered models' arms")
    parser.add_argument("--dataset", dest="extra_datasets", action="append", default=[], metavar="NAME=PATH",
                        help="another dataset: NAME a registry name (csv, jsonl, folder for your own "
                             "collection), PATH its file or folder; trained with the emoji configs")
    parser.add_argument("--reuse", type=Path, nargs="+", metavar="DIR",
                        help="folders of earlier runs (other benchmarks' --out): a finished run of exactly an "
                             "arm's config is copied in and evaluated instead of trained")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the reports from the runs that have finished "
                             "(a row counts its seeds)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    extra = ("train.epochs=1",) if args.quick else ()
    runs = args.runs / "quick" if args.quick else args.runs
    targets = [(name, DATA[name]) for name in args.datasets]
    for given in args.extra_datasets:
        name, _, path = given.partition("=")
        if not path:
            parser.error(f"--dataset {given!r}: give NAME=PATH")
        targets.append((name, Path(path)))
    earlier = EarlierRuns(args.reuse) if args.reuse else None
    started = time.perf_counter()
    all_rows = []
    for name, path in targets:
        if not path.exists():
            logger.warning("dataset %s: %s is missing; skipped", name, path)
            continue
        arms = arms_for(name, set(args.models) if args.models else None, args.quick)
        all_rows.append(run_dataset(name, path, arms, seeds, runs, extra, earlier, args.report_only))
    wall = time.perf_counter() - started
    results = results_report(all_rows, seeds, wall, args.quick, args.report_only)
    from benchmarks.papers import reproduction_report

    reproduction = reproduction_report({rows.dataset: {arm.row: runs_ for arm, runs_ in rows.runs.items()}
                                        for rows in all_rows})
    if args.quick:
        (runs / "QUICK.md").write_text("\n".join(results + [""] + reproduction) + "\n")
        logger.info("quick run: %.1f minutes; report in %s", wall / 60, runs / "QUICK.md")
    else:
        (REPO / "benchmarks" / "RESULTS.md").write_text("\n".join(results) + "\n")
        (REPO / "benchmarks" / "REPRODUCTION.md").write_text("\n".join(reproduction) + "\n")
    print("\n".join(results))


if __name__ == "__main__":
    main()
