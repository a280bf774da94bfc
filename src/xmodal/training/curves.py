"""The per-epoch JSONL log and a PNG plot of the training curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(records: list[dict[str, Any]], path: Path, metric: str) -> None:
    """Loss terms (left) and the validation metric (right) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in sorted({k for r in records for k in r.get("loss", {})}):
        loss_axis.plot(epochs, [r["loss"].get(key) for r in records], label=key, marker=".")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="loss terms")
    loss_axis.legend(fontsize=8)
    metric_axis.plot(epochs, [r["val"].get(metric, math.nan) for r in records], marker="o", color="tab:green")
    metric_axis.set(xlabel="epoch", ylabel=f"validation {metric}", title=f"validation {metric}")
    figure.tight_layout()
    staging = path.with_suffix(".tmp.png")
    figure.savefig(staging, dpi=100)
    plt.close(figure)
    staging.replace(path)
