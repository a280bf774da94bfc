"""Deterministic, stratified train/val/test assignment for datasets that ship no split."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Sequence

from xmodal.data.records import Split


def stable_rank(key: str, salt: str = "xmodal") -> str:
    """A hash that orders ids the same way on every machine and Python version."""
    return hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()


def stratified_split(
    ids: Sequence[str],
    strata: Sequence[object],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    fold: int = 0,
) -> dict[str, Split]:
    """Assign each id to train/val/test so that every stratum keeps the given fractions.

    Within a stratum the ids are ordered by a stable hash, and the first ``round(n * val)`` go
    to val, the next ``round(n * test)`` to test, the rest to train. Adding an item to one
    stratum never moves items of another stratum. ``fold`` k takes the val part k val-sizes
    further along that order (wrapping round), so folds 0 to F - 1 of val fraction 1/F hold
    disjoint val parts that cover the stratum, for model selection by cross-validation.
    """
    if len(ids) != len(strata):
        raise ValueError(f"{len(ids)} ids but {len(strata)} strata")
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    groups: dict[object, list[str]] = defaultdict(list)
    for item_id, stratum in zip(ids, strata):
        groups[stratum].append(item_id)
    _, val_fraction, test_fraction = fractions
    assignment: dict[str, Split] = {}
    for members in groups.values():
        members.sort(key=stable_rank)
        # Fold k's val part: positions round(k n v) up to round((k + 1) n v), so folds of v = 1/F tile the stratum.
        start = round(fold * len(members) * val_fraction)
        n_val = round((fold + 1) * len(members) * val_fraction) - start
        if members:
            start %= len(members)
            members = members[start:] + members[:start]
        n_test = round(len(members) * test_fraction)
        for position, item_id in enumerate(members):
            if position < n_val:
                assignment[item_id] = "val"
            elif position < n_val + n_test:
                assignment[item_id] = "test"
            else:
                assignment[item_id] = "train"
    return assignment
