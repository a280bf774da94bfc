"""Early stopping (xmodal.training.stopping): the trainer's rule, and its replay on a recorded curve."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.probes.early_stopping import stops, validation_curve
from xmodal.errors import XmodalError
from xmodal.training.stopping import EarlyStopping, replay

CURVE = [1.0, 3.0, 2.0, 2.5, 3.0, 5.0]  # a dip after epoch 2, a tie at 5 (not better), the best at 6


def test_only_a_strictly_better_score_is_kept_and_patience_counts_the_epochs_since():
    stopping = EarlyStopping(patience=2)
    assert [stopping.update(epoch, score) for epoch, score in enumerate(CURVE[:3], start=1)] == [True, True, False]
    assert (stopping.best, stopping.best_epoch, stopping.bad_epochs, stopping.stopped) == (3.0, 2, 1, False)
    assert stopping.update(4, 3.0) is False and stopping.stopped  # a tie is not better
    stopping.keep_unvalidated(5)
    assert math.isnan(stopping.best) and stopping.best_epoch == 5


@pytest.mark.parametrize("patience, stop, keeps", [(1, 3, 2), (3, 5, 2), (4, 6, 6), (10, 6, 6)])
def test_replay_stops_where_the_trainer_would(patience, stop, keeps):
    epoch, stopping = replay(CURVE, patience)
    assert (epoch, stopping.best_epoch) == (stop, keeps)


def test_the_probe_reads_a_run_log_and_says_when_the_curve_ends_first(tmp_path):
    with pytest.raises(XmodalError, match="no validation scores"):
        validation_curve(tmp_path)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "val": {"rsum": v}}) + "\n" for e, v in enumerate(CURVE[:4], 1)))
    metric, curve = validation_curve(tmp_path)
    assert metric == "rsum" and curve == CURVE[:4]
    found = stops(curve, [1, 3], ran_to_the_end=False)
    assert found[1] == {"stops_at": 3, "stopped_early": True, "keeps": 2, "score": 3.0}
    assert found[3] is None  # the run stopped after 4 epochs: patience 3 would have needed epoch 5
    assert stops(curve, [3], ran_to_the_end=True)[3] == {"stops_at": 4, "stopped_early": False, "keeps": 2,
                                                         "score": 3.0}
