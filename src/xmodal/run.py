"""A run: what training and evaluation need, built from a config by :mod:`xmodal.factory`.

``RUN/data.json`` records the data a run was trained on (its fingerprint and each split's item
ids), so evaluation can tell when the data changed since training and still evaluate on what
the run used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from xmodal.config import RunConfig
from xmodal.data.records import Dataset
from xmodal.errors import DataChangedError
from xmodal.features.inputs import ModelData
from xmodal.models.base import RetrievalModel
from xmodal.paths import atomic_write_bytes


@dataclass
class Run:
    """Everything training and evaluation need: the resolved config, the data and the model."""

    config: RunConfig
    dataset: Dataset
    data: ModelData
    model: RetrievalModel
    device: torch.device
    metric: str  # what early stopping watches: "rsum" or "map"


DATA_RECORD = "data.json"


def record_data(run: Run, out: Path) -> None:
    """``RUN/data.json``: the data's fingerprint and each split's item ids, so that evaluation can
    tell when the data changed since training (and still evaluate on what the run used)."""
    record = {"dataset": run.dataset.name, "path": run.config.data.path, "fingerprint": run.dataset.fingerprint(),
              "splits": run.data.split_ids()}
    atomic_write_bytes(out / DATA_RECORD, json.dumps(record).encode())


def check_data(run: Run, run_dir: Path, allow_changed: bool) -> str | None:
    """Refuse a run whose data changed since training; with ``allow_changed`` evaluate on the items
    the run recorded and return the one line that says so (``None`` when nothing changed)."""
    path = run_dir / DATA_RECORD
    if not path.is_file():  # runs trained before xmodal recorded their data
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    now = run.dataset.fingerprint()
    if record["fingerprint"] == now:
        return None
    recorded = {name: set(ids) for name, ids in record["splits"].items()}
    current = {name: set(ids) for name, ids in run.data.split_ids().items()}
    counts = {name: (len(current.get(name, set()) - ids), len(ids - current.get(name, set())))
              for name, ids in recorded.items()}
    changes = ", ".join(f"{name} {added:+d}/-{removed} items" for name, (added, removed) in counts.items())
    what = (f"the data at {run.config.data.path} changed since {run_dir} was trained (fingerprint "
            f"{record['fingerprint']} -> {now}; {changes})")
    if not allow_changed:
        raise DataChangedError(f"{what}; metrics on other data would not be comparable. Pass --allow-changed to "
                               "evaluate on the items the run recorded (those still present)",
                               same_items=not any(added or removed for added, removed in counts.values()))
    run.data.use_split_ids(record["splits"])
    return f"warning: {what}; evaluating on the items the run recorded (--allow-changed)"
