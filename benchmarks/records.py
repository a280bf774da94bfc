"""The recorded results of the quality benchmark: one line per finished run, committed with the reports.

Run folders are big and live outside the repository, so the tables are rendered from records:
``benchmarks/results/quality.jsonl`` holds, per (dataset, model, seed), what :func:`benchmarks.runner.measure`
returned, the config digest it was trained with and the date. A record whose digest differs from
today's plan (the config or the model's defaults changed since) is stale: the report leaves it out
and says so. ``benchmarks/results/quality-2026-11-25.json`` keeps the summaries (mean, std, seeds) of
the last full run before per-run records were kept; a row without fresh records shows that summary,
marked with its date.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from benchmarks.plan import REPO

RECORDS = REPO / "benchmarks" / "results" / "quality.jsonl"
EARLIER = REPO / "benchmarks" / "results" / "quality-2026-11-25.json"


@dataclass(frozen=True)
class Summary:
    """A figure over seeds: mean, sample standard deviation (0 for one seed) and the seed count."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Summary | None":
        if not values:
            return None
        if any(math.isnan(value) for value in values):
            return cls(math.nan, math.nan, len(values))
        return cls(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def text(self, digits: int) -> str:
        """"mean ± std" (one seed: the value); "-" when not a number (MAP of unlabelled data)."""
        if math.isnan(self.mean):
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def metric(result: dict, key: str) -> float | None:
    """One figure of a measured run: ``rsum``, ``i2t.map@50``, ``exhaustive.rsum``, ``mean.map`` (both
    directions' mean), ``seconds`` (training + evaluation); None when the run has no such figure."""
    if key == "seconds":
        return result["train_seconds"] + result["eval_seconds"]
    head, _, rest = key.partition(".")
    if head in ("attention", "pointing"):  # attention.<map>.<statistic>; a map name may hold dots
        name, _, statistic = rest.rpartition(".")
        value = result.get(head, {}).get(name, {}).get(statistic)
        return None if value is None else float(value)
    if head == "mean":
        values = [result[direction].get(rest) for direction in ("i2t", "t2i")]
        return None if None in values else sum(values) / 2
    if head == "exhaustive":
        result = result.get("exhaustive", result if result.get("ranking", {}).get("method") == "exhaustive" else {})
        return metric(result, rest) if result else None
    if not rest:
        return result.get(head)
    return result.get(head, {}).get(rest)


class RecordStore:
    """Records of finished runs by (dataset, model, seed); the newest record of a key wins.

    Benchmark processes run side by side (one dataset or model each), so :meth:`put` re-reads the
    file under an exclusive lock before it writes, and writes it whole by rename."""

    def __init__(self, path: Path = RECORDS):
        self.path = path
        self.records: dict[tuple[str, str, int], dict] = self._read()

    def _read(self) -> dict[tuple[str, str, int], dict]:
        records = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    records[(record["dataset"], record["model"], record["seed"])] = record
        return records

    def put(self, record: dict) -> None:
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.records = self._read() | {(record["dataset"], record["model"], record["seed"]): record}
            lines = [json.dumps(record, sort_keys=True) for _, record in sorted(self.records.items())]
            staging = self.path.with_suffix(f".jsonl.tmp-{os.getpid()}")
            staging.write_text("\n".join(lines) + "\n", encoding="utf-8")
            staging.replace(self.path)  # whole or not at all

    def results(self, dataset: str, model: str, digest: str) -> tuple[list[dict], int]:
        """The results of ``model`` on ``dataset`` trained with the config ``digest``, and how many
        records of it are stale (trained with another config)."""
        found = [record for (d, m, _), record in sorted(self.records.items()) if d == dataset and m == model]
        return [record["result"] for record in found if record["digest"] == digest], \
            sum(record["digest"] != digest for record in found)


def earlier_summaries(path: Path = EARLIER) -> dict:
    """``{dataset: {model: {"seeds", "ranking", "figures": {key: [mean, std]}}}}`` of the last full run
    before per-run records, with ``"source"`` saying where and when it was measured."""
    if not path.is_file():
        return {"source": "", "datasets": {}}
    return json.loads(path.read_text(encoding="utf-8"))
