"""Early stopping on the validation metric: keep the best epoch, stop after ``patience`` worse ones.

One rule for the trainer and for replaying a finished run's validation curve under another
patience (``python -m benchmarks probe early-stopping``): an epoch is better only when its score
is strictly higher than every earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    patience: int
    best: float = -math.inf
    best_epoch: int = 0  # 1-based; 0 before any epoch
    bad_epochs: int = 0  # epochs since the best

    def update(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s validation score; True when it is the best so far (its checkpoint is kept)."""
        if score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def keep_unvalidated(self, epoch: int) -> None:
        """With no validation split every epoch is kept: the last one is the run's."""
        self.best, self.best_epoch = math.nan, epoch

    @property
    def stopped(self) -> bool:
        return self.bad_epochs >= self.patience


def replay(scores: Sequence[float], patience: int) -> tuple[int, EarlyStopping]:
    """The epoch a run with these validation ``scores`` (epoch 1 first) stops at under ``patience``,
    and what it keeps."""
    stopping = EarlyStopping(patience)
    for epoch, score in enumerate(scores, start=1):
        stopping.update(epoch, score)
        if stopping.stopped:
            return epoch, stopping
    return len(scores), stopping
