"""``python -m benchmarks quality``: every quality table from one command, resumable.

Each arm of the plan (:mod:`benchmarks.plan`: every shipped ``<model>/<dataset>`` config as the
model and as each of its variants) trains with each seed into ``RUNS/<dataset>/<model>-s<seed>``
and is measured as ``xmodal eval RUN --json`` measures it (:func:`benchmarks.runner.measure`); a run
whose ``test.json`` exists is not trained again, so an interrupted benchmark resumes. Each result
is recorded in ``benchmarks/results/quality.jsonl``, and the reports are written from the records:

- ``benchmarks/RESULTS.md``: a table per dataset (MAP@all, MAP@50, R@1/5/10, rsum as the data allow;
  how each row was ranked), the encoder substitutions;
- ``benchmarks/REPRODUCTION.md``: each paper's headline tables as published beside ours, with which
  of the paper's orderings hold here (:mod:`benchmarks.papers`).

``--quick`` is a smoke run (one seed, one epoch, each config's own model; its report goes to
``RUNS/quick/QUICK.md``, nothing is recorded). ``--dataset NAME=PATH`` adds a user's collection
(NAME a registry reader: ``csv``, ``jsonl``, ``folder``) trained with the emoji configs; its report
goes to ``RUNS/NAME.md``. ``--reuse DIR`` takes finished runs of exactly an arm's config from other
folders. ``--report-only`` trains nothing and writes the reports from the records.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import time
from pathlib import Path

from benchmarks.papers import reproduction_report
from benchmarks.plan import DATASETS, REPO, Arm, plan_for
from benchmarks.records import RecordStore, earlier_summaries
from benchmarks.report import Row, results_report
from benchmarks.runner import EarlierRuns, config_digest, train_and_measure
from xmodal.config import load_config

logger = logging.getLogger("benchmarks.quality")


def arm_digest(arm: Arm, path: Path) -> str:
    return config_digest(load_config(arm.config, arm.settings(0, path)))


def run_arms(dataset: str, path: Path, arms: list[Arm], seeds: list[int], runs: Path, extra: tuple[str, ...],
             store: RecordStore | None, earlier: EarlierRuns | None = None) -> dict[Arm, list[dict]]:
    """Train and measure every arm for every seed (seed by seed, so an interrupted run has every arm);
    a failed run is reported in its row and the others still run."""
    results: dict[Arm, list[dict]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            run_dir = runs / dataset / f"{arm.slug}-s{seed}"
            logger.info("%s / %s / seed %d", dataset, arm.model, seed)
            try:
                result = train_and_measure(arm.config, run_dir, [*arm.settings(seed, path), *extra], earlier=earlier)
            except Exception as error:  # a broken arm is reported in its row, the others still run
                logger.error("%s / %s / seed %d failed: %s", dataset, arm.model, seed, error)
                result = {"error": str(error)}
            if store is not None and "error" not in result:
                store.put({"dataset": dataset, "model": arm.model, "seed": seed, "digest": result["config_digest"],
                           "config": arm.config, "date": datetime.date.today().isoformat(), "result": result})
            results[arm].append(result)
    return results


def rows_of(dataset: str, path: Path, arms: list[Arm], store: RecordStore | None, earlier: dict,
            measured: dict[Arm, list[dict]] | None = None) -> list[Row]:
    """Each arm's row: its recorded runs of today's config (or those just measured), else the earlier summary."""
    rows = []
    for arm in arms:
        row = Row(arm, earlier=earlier.get(dataset, {}).get(arm.model))
        if measured is not None and store is None:  # a quick or user-collection run: what was just measured
            row.results = [r for r in measured.get(arm, []) if "error" not in r]
        elif store is not None:
            row.results, row.stale = store.results(dataset, arm.model, arm_digest(arm, path))
        row.failed = [r["error"] for r in (measured or {}).get(arm, []) if "error" in r]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, default arms; writes RUNS/QUICK.md")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--models", nargs="+", help="only these registered models' arms")
    parser.add_argument("--arms", nargs="+", metavar="NAME",
                        help="only these rows, by model or variant name (jgcar jgcar-grl); the others are reported")
    parser.add_argument("--dataset", dest="extra_datasets", action="append", default=[], metavar="NAME=PATH",
                        help="another dataset: NAME a registry name (csv, jsonl, folder for your own "
                             "collection), PATH its file or folder; trained with the emoji configs")
    parser.add_argument("--reuse", type=Path, nargs="+", metavar="DIR",
                        help="folders of earlier runs: a finished run of exactly an arm's config is copied in and "
                             "evaluated instead of trained")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the reports from the recorded runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    extra = ("train.epochs=1",) if args.quick else ()
    runs = args.runs / "quick" if args.quick else args.runs
    targets = [(name, DATASETS[name], True) for name in args.datasets]
    for given in args.extra_datasets:
        name, _, path = given.partition("=")
        if not path:
            parser.error(f"--dataset {given!r}: give NAME=PATH")
        targets.append((name, Path(path), False))
    models = set(args.models) if args.models else None
    store = RecordStore()
    earlier = earlier_summaries()
    reuse = EarlierRuns(args.reuse) if args.reuse else None
    started = time.perf_counter()
    measured: dict[str, dict[Arm, list[dict]]] = {}
    for name, path, recorded in targets:
        if not path.exists():
            logger.warning("dataset %s: %s is missing; skipped", name, path)
            continue
        arms = plan_for(name, models, args.quick)
        keep = store if recorded and not args.quick else None
        to_run = [arm for arm in arms if not args.arms or arm.model in args.arms]
        if not args.report_only:
            measured[name] = run_arms(name, path, to_run, seeds, runs, extra, keep, reuse)
    # The committed reports cover every benchmark dataset from the records (other processes' runs too);
    # a quick run or a user's collection reports what it measured.
    tables: dict[str, list[Row]] = {}
    if args.quick or args.extra_datasets:
        for name, path, _ in targets:
            if name in measured:
                tables[name] = rows_of(name, path, plan_for(name, models, args.quick), None, {}, measured[name])
    else:
        store = RecordStore()  # what every process has recorded by now
        for name, path in DATASETS.items():
            tables[name] = rows_of(name, path, plan_for(name), store, earlier["datasets"], measured.get(name))
    took = f"This command took {(time.perf_counter() - started) / 60:.1f} minutes." if not args.report_only else ""
    results = results_report(tables, seeds, earlier["source"], args.quick, took,
                             recorded=not (args.quick or args.extra_datasets))
    if args.quick or args.extra_datasets:
        out = runs / ("QUICK.md" if args.quick else f"{'-'.join(name for name, *_ in targets)}.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(results + [""] + reproduction_report(tables)) + "\n")
        logger.info("report in %s", out)
    else:
        (REPO / "benchmarks" / "RESULTS.md").write_text("\n".join(results) + "\n")
        (REPO / "benchmarks" / "REPRODUCTION.md").write_text("\n".join(reproduction_report(tables)) + "\n")
    print("\n".join(results))
    failed = sum(len(row.failed) for rows in tables.values() for row in rows)
    if failed:
        raise SystemExit(f"{failed} run(s) failed: see the report")
