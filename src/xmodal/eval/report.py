"""Printing metrics as a table a person can read."""

from __future__ import annotations

from typing import Any

PERCENT_KEYS = ("r@1", "r@5", "r@10")


def format_table(metrics: dict[str, Any]) -> str:
    """Rows i2t / t2i, columns the metrics present (MAP as a fraction, recall in percent)."""
    directions = [d for d in ("i2t", "t2i") if d in metrics]
    columns = [key for key in metrics[directions[0]]]
    header = f"{'':<5}" + "".join(f"{key:>9}" for key in columns)
    lines = [header]
    for direction in directions:
        cells = []
        for key in columns:
            value = metrics[direction][key]
            cells.append(f"{value:>9.4f}" if key.startswith("map") else f"{value:>9.1f}")
        lines.append(f"{direction:<5}" + "".join(cells))
    if "rsum" in metrics:
        lines.append(f"rsum {metrics['rsum']:.1f}")
    return "\n".join(lines)


def format_ranking(ranking: dict[str, Any]) -> str:
    """How a run's scores were ranked, as every retrieval figure should say: "exhaustive" or "two-stage K=20"."""
    return f"two-stage K={ranking['k']}" if ranking.get("method") == "two-stage" else "exhaustive"
