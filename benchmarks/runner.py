"""Training and measuring one benchmark run, resumably, exactly as ``xmodal eval RUN --json`` measures it.

:func:`measure` is the one measurement of every benchmark table: :meth:`xmodal.api.TrainedRun.evaluate`
on the test split under the run's own protocol (its ``eval`` section: exhaustive scoring, or
two-stage search with the config's shortlist); a two-stage run is also ranked exhaustively, so a
table can put the model's own score beside its two-stage one. :func:`train_and_measure` trains a
run folder unless it is finished, reuses a finished run of exactly the same config found in other
folders (``--reuse``), and keeps the result in ``RUN/test.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from xmodal.api import load_run
from xmodal.config import RunConfig, load_config
from xmodal.errors import DataChangedError, XmodalError
from xmodal.factory import train_config, with_resolved_paths
from xmodal.models.registry import model_params, resolve
from xmodal.training.curves import read_log

logger = logging.getLogger("benchmarks")


def measure(run_dir: Path) -> dict:
    """The test metrics as ``xmodal eval RUN --json`` prints them (``ranking`` says how they were ranked);
    for a two-stage run also ``exhaustive``, the same run scored on every pair.

    A run whose data fingerprint changed while every item it recorded is still there (shared data
    copied anew) is evaluated on those items, and the result says so; any other change is an
    error, as in ``xmodal eval``.
    """
    started = time.perf_counter()
    run = load_run(run_dir)
    try:
        metrics = run.evaluate()
    except DataChangedError as error:
        if not error.same_items:
            raise
        run = load_run(run_dir, allow_changed=True)
        metrics = run.evaluate()
    if metrics["ranking"]["method"] != "exhaustive":
        metrics["exhaustive"] = {key: value for key, value in run.evaluate(shortlist=0).items()
                                 if key in ("i2t", "t2i", "rsum", "ranking")}
    return metrics | {"eval_seconds": time.perf_counter() - started}


def effective(config: RunConfig) -> dict:
    """``config`` as a plain dict with the model's parameters parsed (defaults filled, a variant's preset
    applied): two configs that train the same model compare equal, however each spells it."""
    cls, params = model_params(config.model.name, config.model.params)
    return config.model_dump() | {"model": {"name": cls.name, "params": params.model_dump()}}


# Config fields added after records were first kept, with their defaults: at its default such a field
# is left out of the digest, so adding a setting does not turn every earlier record stale.
LATER_FIELDS: dict[str, dict[str, object]] = {"data": {"lang": None, "unknown_words": "zero",
                                                        "graph_vectors": "glove"}}


def config_digest(config: RunConfig) -> str:
    """What a result was trained with, as a short hash of the config as written (the variant's preset
    applied; defaults not filled, so a parameter added to a model later leaves old records valid),
    less where the data lives and the seed (records are kept per seed)."""
    cls, preset = resolve(config.model.name)
    settings = config.model_dump(mode="json")
    for section, fields in LATER_FIELDS.items():
        for field, default in fields.items():
            if settings[section].get(field, default) == default:
                settings[section].pop(field, None)
    settings["model"] = {"name": cls.name, "params": preset | config.model.params}
    settings["data"]["path"] = None
    settings["train"]["seed"] = None
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


class EarlierRuns:
    """Finished training runs under some folders (other benchmarks' ``--runs``), by recorded config.

    A benchmark that would train a config can take a finished run of exactly that config instead
    (:func:`train_and_measure`): its checkpoint is measured again by today's code, so only the
    training is reused. Finished means ``trained.json`` is there, or the epoch log reaches the
    config's epochs or its early-stopping patience (an interrupted run is not taken).
    """

    def __init__(self, folders: Iterable[Path]):
        self.folders = [Path(folder) for folder in folders]
        self._index: list[tuple[dict, Path]] | None = None

    def _finished(self) -> list[tuple[dict, Path]]:
        found = []
        for folder in self.folders:
            for config_file in sorted(folder.rglob("config.yaml")):
                run_dir = config_file.parent
                try:
                    config = load_config(config_file)
                    settings = effective(config)
                except XmodalError as error:  # a run of an older schema or model cannot match today's configs
                    logger.debug("not reusable: %s", error)
                    continue
                if (run_dir / "checkpoints" / "best.pt").is_file() and _training_finished(run_dir, config):
                    found.append((settings, run_dir))
        logger.info("%d finished runs to reuse under %s", len(found), ", ".join(map(str, self.folders)))
        return found

    def find(self, wanted: RunConfig) -> Path | None:
        if self._index is None:
            self._index = self._finished()
        settings = effective(wanted)
        return next((run_dir for found, run_dir in self._index if found == settings), None)


def _same_config(recorded: Path, wanted: RunConfig) -> bool:
    try:
        return effective(load_config(recorded)) == effective(wanted)
    except XmodalError:  # recorded by an older schema or for a model that is gone
        return False


def _training_finished(run_dir: Path, config: RunConfig) -> bool:
    if (run_dir / "trained.json").is_file():
        return True
    try:
        log = read_log(run_dir / "log.jsonl")
    except json.JSONDecodeError:  # a line cut short by a killed run
        return False
    if not log:
        return False
    last, train = log[-1], config.train
    stalled = last["epoch"] - last.get("best_epoch", last["epoch"])  # logs of older runs lack best_epoch
    return last["epoch"] >= train.epochs or stalled >= train.early_stopping.patience


def adopt_run(source: Path, run_dir: Path) -> None:
    """Copy a finished run into ``run_dir`` with its ``trained.json`` (from the epoch log when it had none:
    training time = the sum of its epochs' seconds, which leaves out data loading)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    staging = run_dir.with_name(run_dir.name + ".adopting")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("test.json", "trained.json", "last.pt"))
    if (source / "trained.json").is_file():
        trained = json.loads((source / "trained.json").read_text())
    else:
        log = read_log(source / "log.jsonl")
        trained = {"train_seconds": sum(record["seconds"] for record in log), "epochs": log[-1]["epoch"],
                   "best_epoch": log[-1].get("best_epoch"), "train_seconds_from": "epoch log"}
    (staging / "trained.json").write_text(json.dumps(trained | {"adopted_from": str(source)}))
    staging.replace(run_dir)  # whole or not at all: a half-copied run never looks trained


def train_and_measure(config: str | Path, run_dir: Path, overrides: list[str],
                      measure: Callable[[Path], dict] = measure, earlier: EarlierRuns | None = None) -> dict:
    """Train into ``run_dir`` and return ``measure(run_dir)`` plus timings, kept in ``run_dir/test.json``.

    A run whose ``test.json`` exists is not trained again, so an interrupted benchmark resumes; a
    run whose training finished (``trained.json``) before an interrupted measurement is only measured.
    A run folder whose recorded ``config.yaml`` differs from what ``config`` and ``overrides`` give
    now (a changed default, a new override) is trained again. With ``earlier``, a finished run of
    the same config found there is copied in and measured instead of training.
    """
    done, trained_file = run_dir / "test.json", run_dir / "trained.json"
    wanted = with_resolved_paths(load_config(config, overrides))
    if (run_dir / "config.yaml").is_file() and not _same_config(run_dir / "config.yaml", wanted):
        logger.warning("%s was trained with another config than %s asks for now: training it again", run_dir, config)
        done.unlink(missing_ok=True)
        trained_file.unlink(missing_ok=True)
    if done.exists():
        return json.loads(done.read_text())
    if not trained_file.exists() and earlier is not None and (source := earlier.find(wanted)) is not None:
        logger.info("%s: reusing the finished run %s (same config)", run_dir, source)
        adopt_run(source, run_dir)
    if not trained_file.exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        started = time.perf_counter()
        trained = train_config(wanted, run_dir)
        trained_file.write_text(json.dumps({"train_seconds": time.perf_counter() - started,
                                            "epochs": trained.epochs_run, "best_epoch": trained.best_epoch}))
    result = measure(run_dir) | json.loads(trained_file.read_text()) | {"config_digest": config_digest(wanted)}
    done.write_text(json.dumps(result, indent=1))
    return result
