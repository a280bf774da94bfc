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
    return "\n".join(lines + attention_lines(metrics))


def attention_lines(metrics: dict[str, Any]) -> list[str]:
    """The attention statistics and the pointing game of an evaluation, when the model has attention."""
    lines = []
    if metrics.get("attention"):
        pairs = max(stats["pairs"] for stats in metrics["attention"].values())
        lines.append(f"attention over {pairs} matching pairs: normalised entropy (1 = uniform), largest weight "
                     "(uniform weight)")
        width = max(len(name) for name in metrics["attention"])
        lines += [f"  {name:<{width}}  {stats['entropy']:.3f}  {stats['max_weight']:.3f} "
                  f"({stats['uniform_weight']:.3f})" for name, stats in metrics["attention"].items()]
    if metrics.get("pointing"):
        lines.append("pointing game: the largest region in the text's box, and the weight on it (chance)")
        width = max(len(name) for name in metrics["pointing"])
        lines += [f"  {name:<{width}}  accuracy {stats['accuracy']:.3f} ({stats['chance']:.3f})  mass "
                  f"{stats['mass']:.3f} ({stats['chance']:.3f})  {stats['pairs']} pairs, {stats['combined']}"
                  for name, stats in metrics["pointing"].items()]
    return lines


def format_ranking(ranking: dict[str, Any]) -> str:
    """How a run's scores were ranked, as every retrieval figure should say: "exhaustive", "two-stage K=20",
    or "two-stage K=20, first stage conse (RUN)" where another run shortlisted."""
    if ranking.get("method") != "two-stage":
        return "exhaustive"
    first = f", first stage {ranking['first_stage']}" if "first_stage" in ranking else ""
    return f"two-stage K={ranking['k']}{first}"
