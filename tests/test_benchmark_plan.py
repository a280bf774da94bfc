"""The quality benchmark's plan and reproduction report (benchmarks/quality.py, benchmarks/papers.py).

Every arm's config must load with its overrides (a typo in a preset or a clash with the config's own
parameters would otherwise surface hours into a run), every paper row must map to an arm that
exists, and the report's ordering verdicts must follow the numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.papers import TABLES, reproduction_report
from benchmarks.quality import PLAN, arms_for

from xmodal.config import load_config
from xmodal.models.registry import model_params

REPO = Path(__file__).resolve().parents[1]
ARMS = [(dataset, arm) for dataset, arms in PLAN.items() for arm in arms]


@pytest.mark.parametrize("dataset,arm", ARMS, ids=[f"{dataset}:{arm.row}" for dataset, arm in ARMS])
def test_every_arm_config_loads_with_its_overrides(dataset, arm):
    config = load_config(REPO / "configs" / f"{arm.config}.yaml", [*arm.overrides, "train.seed=1"])
    assert config.data.dataset == dataset
    cls, params = model_params(config.model.name, config.model.params)
    assert cls.name == arm.model
    for override in arm.overrides:
        key, _, value = override.partition("=")
        if key.startswith("model.params."):
            assert str(getattr(params, key.removeprefix("model.params."))).lower() == value.lower()


def test_row_names_are_unique_per_dataset():
    for dataset, arms in PLAN.items():
        rows = [arm.row for arm in arms]
        assert len(rows) == len(set(rows)), dataset


def test_every_paper_row_maps_to_a_planned_arm():
    for table in TABLES:
        for dataset, mapping in table.ours.items():
            planned = {arm.row for arm in PLAN[dataset]}
            assert set(mapping) <= set(table.published), table.paper
            assert set(mapping.values()) <= planned, (table.paper, dataset, set(mapping.values()) - planned)


def test_quick_keeps_one_default_arm_per_model():
    for dataset in PLAN:
        arms = arms_for(dataset, None, quick=True)
        assert arms and all(not arm.ablation for arm in arms)
        assert len({arm.model for arm in arms}) == len(arms)


def _run(rsum: float) -> dict:
    return {"rsum": rsum, "i2t": {}, "t2i": {}}


def test_orderings_follow_the_numbers():
    results = {"flickr8k": {"GRL": [_run(300.0), _run(302.0)],
                            "JGCAR-v1 (no labels: J2, J3 off)": [_run(310.0), _run(312.0)],
                            "SGCAR": [_run(320.0), _run(330.0)]}}
    report = "\n".join(reproduction_report(results))
    flickr = report[report.index("## JGCAR"):report.index("## BSSAN")]
    assert "- JGCAR-v1 > GRL: holds, gap +10.0 (beyond the seed spread)" in flickr
    # The paper has SGCAR (353.7) above JGCAR-v1 (351.1); here SGCAR leads by 14.0, more than its spread 7.1.
    assert "- SGCAR > JGCAR-v1: holds, gap +14.0 (beyond the seed spread)" in flickr
    assert "- JGCAR-v2 > GRL: not measured here" in flickr
    assert "| GRL | 322.3 | 301.0 ± 1.4 |" in flickr
    results["flickr8k"]["GRL"] = [_run(315.0), _run(316.0)]
    flickr = "\n".join(reproduction_report(results))
    assert "- JGCAR-v1 > GRL: does not hold, gap -4.5 (beyond the seed spread)" in flickr


def test_report_only_counts_the_finished_runs_and_trains_nothing(tmp_path, monkeypatch):
    import json

    import benchmarks.quality as quality

    monkeypatch.setattr(quality, "train_and_measure", lambda *a, **k: pytest.fail("trained in --report-only"))
    arms = arms_for("emoji", {"cca", "dual"}, quick=False)
    finished = {"i2t": {"map": 0.5, "r@1": 10.0}, "t2i": {"map": 0.4, "r@1": 8.0}, "rsum": 18.0,
                "train_seconds": 3.0, "eval_seconds": 1.0}
    (tmp_path / "emoji" / "cca-s1").mkdir(parents=True)
    (tmp_path / "emoji" / "cca-s1" / "test.json").write_text(json.dumps(finished))
    rows = quality.run_dataset("emoji", tmp_path, arms, [0, 1], tmp_path, (), report_only=True)
    assert {arm.row: len(runs) for arm, runs in rows.runs.items()} == {"cca": 1, "dual": 0}
    table = quality.dataset_table(rows)
    assert "| cca | 1 | 0.500 | 0.400 |" in table[2] and table[3].startswith("| dual | 0 | - |")
