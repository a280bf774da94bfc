"""The grid-search helper: grid expansion, dotted keys, metric lookup, and a real (tiny) sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engine_helpers import write_dual_config, write_feature_dataset
from xmodal.errors import XmodalError
from xmodal.sweep import (
    expand_grid,
    main,
    metric_value,
    parse_grid,
    point_config,
    point_name,
    run_sweep,
    score_run,
    set_dotted,
)

METRICS = {"i2t": {"map": 0.5, "map@50": 0.7}, "t2i": {"map": 0.3, "map@50": 0.4}, "rsum": 120.0}


def test_expand_grid_first_key_slowest():
    grid = {"a.x": [1, 2], "b": ["p", "q", "r"]}
    assert expand_grid(grid) == [{"a.x": 1, "b": "p"}, {"a.x": 1, "b": "q"}, {"a.x": 1, "b": "r"},
                                 {"a.x": 2, "b": "p"}, {"a.x": 2, "b": "q"}, {"a.x": 2, "b": "r"}]
    assert expand_grid({}) == [{}]
    with pytest.raises(XmodalError, match="'b' has no values"):
        expand_grid({"a": [1], "b": []})


def test_set_dotted_and_point_config():
    raw = {"model": {"name": "dual", "params": {"dim": 8}}, "data": {"dataset": "precomputed"}}
    set_dotted(raw, "model.params.hidden", 4)
    set_dotted(raw, "optim.lr", 0.5)
    assert raw["model"]["params"] == {"dim": 8, "hidden": 4} and raw["optim"] == {"lr": 0.5}
    config = point_config(raw, {"train.seed": 7})
    assert config.train.seed == 7 and config.optim.lr == 0.5 and "train" not in raw  # base left alone
    with pytest.raises(XmodalError, match="optim.lrr: unknown key"):
        point_config(raw, {"optim.lrr": 1.0})
    with pytest.raises(XmodalError, match="dataset is a value"):
        set_dotted(raw, "data.dataset.name", 1)


def test_point_name_and_parse_grid():
    assert point_name({"model.params.alpha": 0.3, "optim.lr": 1e-3}) == "alpha=0.3,lr=0.001"
    assert point_name({}) == "base"
    assert point_name({"data.path": "/a b"}) == "path=_a_b"
    assert parse_grid(["model.params.alpha=0.1,1,3e-2", "x.flag=true,false"]) == {
        "model.params.alpha": [0.1, 1, 0.03], "x.flag": [True, False]}


def test_metric_value_reads_means_directions_and_rsum():
    assert metric_value(METRICS, "map") == pytest.approx(0.4)
    assert metric_value(METRICS, "map@50") == pytest.approx(0.55)
    assert metric_value(METRICS, "t2i.map@50") == pytest.approx(0.4)
    assert metric_value(METRICS, "rsum") == 120.0
    with pytest.raises(XmodalError, match="unknown metric 'r@7'"):
        metric_value(METRICS, "r@7")


def test_sweep_trains_every_point_and_ranks_by_validation(tmp_path: Path):
    data = write_feature_dataset(tmp_path / "features")
    base = yaml.safe_load(write_dual_config(tmp_path / "c.yaml", data, epochs=4).read_text())
    out = tmp_path / "sweep"
    grid = {"optim.lr": [1e-6, 3e-3], "model.params.dim": [8]}
    points = run_sweep(base, grid, out, metric="map")
    # a learning rate of 1e-6 barely moves the random projections: the trained point ranks first
    assert [p.settings["optim.lr"] for p in points] == [3e-3, 1e-6]
    assert points[0].score > points[1].score + 0.1
    assert points[0].score > 0.5  # 4 balanced classes: chance MAP is about 0.25
    for point in points:
        log = (Path(point.run) / "log.jsonl").read_text().splitlines()
        assert len(log) == 4 and Path(point.run).parent == out
        # the score is the validation MAP of the best checkpoint, recomputed from disk
        val = score_run(Path(point.run), ("val",))["val"]
        assert point.score == pytest.approx(metric_value(val, "map"))
        best = max(json.loads(line)["val"]["map"] for line in log)
        assert point.score == pytest.approx(best, abs=1e-6)
    table = (out / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| lr | dim | val map |") and table[2].startswith("| 0.003 | 8 |")
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["metric"] == "map" and [p["score"] for p in saved["points"]] == [p.score for p in points]

    # a second sweep over the same grid reuses the finished runs (no new epochs) and agrees
    again = run_sweep(base, grid, out, metric="map")
    assert [p.score for p in again] == [p.score for p in points]
    assert len((Path(again[0].run) / "log.jsonl").read_text().splitlines()) == 4


def test_sweep_command_line(tmp_path: Path, capsys):
    data = write_feature_dataset(tmp_path / "features")
    config = write_dual_config(tmp_path / "c.yaml", data, epochs=2)
    code = main(["--config", str(config), "--out", str(tmp_path / "s"), "--grid", "model.params.margin=0.1,0.3",
                 "--set", "train.seed=2", "--metric", "rsum"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| margin | val rsum |") and len(printed.strip().splitlines()) == 4
    assert yaml.safe_load((tmp_path / "s" / "margin=0.1" / "config.yaml").read_text())["train"]["seed"] == 2
