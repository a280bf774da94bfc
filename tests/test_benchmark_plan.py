"""The quality benchmark's plan, records and reports (benchmarks/plan.py, records.py, report.py, papers.py).

The plan is derived from the shipped configs and the models' declared variants, so these tests
check the derivation (every model has rows, a speed config and a config; every arm loads) rather
than a list kept by hand; the reports must follow the numbers and say where each row comes from.
"""

from __future__ import annotations

import pytest

from benchmarks import quality
from benchmarks.papers import TABLES, reproduction_report
from benchmarks.plan import DATASETS, LANGUAGE_DATASETS, TEMPLATE_DATASET, plan_for, speed_config
from benchmarks.records import RecordStore, Summary
from benchmarks.report import Row, dataset_table
from xmodal.config import list_configs, load_config
from xmodal.models.registry import model_classes, model_params

ARMS = [arm for dataset in DATASETS for arm in plan_for(dataset)]


@pytest.mark.parametrize("arm", ARMS, ids=[f"{arm.dataset}:{arm.model}" for arm in ARMS])
def test_every_arm_loads_as_the_model_it_names(arm, tmp_path):
    config = load_config(arm.config, arm.settings(seed=1, path=tmp_path))
    # emoji-ja / emoji-ru train the emoji-zh configs in their language
    config_dataset = "emoji-zh" if arm.dataset in LANGUAGE_DATASETS else arm.dataset
    assert arm.config.split("/")[1] == config_dataset and config.model.name == arm.model
    assert config.data.dataset == arm.dataset or (config.data.dataset, config.data.source) == tuple(
        arm.dataset.split("-", 1)) or (config.data.dataset, config.data.lang) == tuple(
        arm.dataset.split("-", 1))  # mosaic-flickr8k: the mosaic reader over flickr8k; emoji-zh: emoji in zh
    cls, params = model_params(config.model.name, config.model.params)
    assert cls.name == arm.family
    variant = arm.model.partition("-")[2]
    for key, value in (cls.variants[variant].params if variant else {}).items():
        assert getattr(params, key) == value


def test_every_registered_model_has_a_config_plan_rows_and_a_speed_case():
    """Nothing to forget when a model is added: it needs only its module and a config."""
    for name in model_classes():
        assert any(config.split("/")[0] == name for config in list_configs()), f"{name} has no config"
        assert any(arm.model == name for arm in ARMS), f"{name} has no row in the quality plan"
        assert speed_config(name).split("/")[0] == name


def test_rows_are_unique_and_quick_keeps_each_configs_own_model():
    for dataset in DATASETS:
        arms = plan_for(dataset)
        assert len({arm.model for arm in arms}) == len(arms) and len({arm.label for arm in arms}) == len(arms)
        quick = plan_for(dataset, quick=True)
        assert quick and all(arm.default for arm in quick) and len({arm.config for arm in quick}) == len(quick)


def test_a_variant_that_trains_the_same_model_as_the_config_is_one_row_with_its_label():
    flickr = {arm.model: arm for arm in plan_for("flickr8k", {"jgcar"})}
    assert "jgcar-v1" not in flickr  # jgcar/flickr8k has no labels, so its own model is JGCAR-v1 already
    assert flickr["jgcar"].label == model_classes()["jgcar"].variants["v1"].label
    assert "acln-shared" not in {arm.model for arm in plan_for("emoji", {"acln"})}


def test_a_user_collection_trains_the_template_configs(tmp_path):
    arms = plan_for("csv", {"dual"}, quick=True)
    assert [arm.config for arm in arms] == [f"dual/{TEMPLATE_DATASET}"]
    assert load_config(arms[0].config, arms[0].settings(0, tmp_path)).data.dataset == "csv"


def test_every_paper_row_names_a_planned_model():
    for table in TABLES:
        for dataset, mapping in table.ours.items():
            planned = {arm.model for arm in plan_for(dataset)}
            assert set(mapping) <= set(table.published), table.paper
            assert set(mapping.values()) <= planned, (table.paper, dataset, set(mapping.values()) - planned)


def _run(rsum: float, ranking: dict | None = None) -> dict:
    return {"rsum": rsum, "i2t": {"r@1": rsum / 10}, "t2i": {"r@1": rsum / 20},
            "ranking": ranking or {"method": "exhaustive"}, "train_seconds": 3.0, "eval_seconds": 1.0}


def _rows(dataset: str, results: dict[str, list[dict]]) -> list[Row]:
    return [Row(arm, results=results.get(arm.model, [])) for arm in plan_for(dataset)]


def test_orderings_follow_the_numbers():
    tables = {"flickr8k": _rows("flickr8k", {"jgcar-grl": [_run(300.0), _run(302.0)],
                                             "jgcar": [_run(310.0), _run(312.0)],
                                             "jgcar-sgcar": [_run(320.0), _run(330.0)]})}
    report = "\n".join(reproduction_report(tables))
    flickr = report[report.index("## JGCAR"):report.index("## BSSAN")]
    assert "- JGCAR-v1 > GRL: holds, gap +10.0 (beyond the seed spread)" in flickr
    # The paper has SGCAR (353.7) above JGCAR-v1 (351.1); here SGCAR leads by 14.0, more than its spread 7.1.
    assert "- SGCAR > JGCAR-v1: holds, gap +14.0 (beyond the seed spread)" in flickr
    assert "- JGCAR-v2 > GRL: not measured here" in flickr
    assert "| GRL | 322.3 | 301.0 ± 1.4 |" in flickr
    tables["flickr8k"][[row.arm.model for row in tables["flickr8k"]].index("jgcar-grl")].results = [
        _run(315.0), _run(316.0)]
    flickr = "\n".join(reproduction_report(tables))
    assert "- JGCAR-v1 > GRL: does not hold, gap -4.5 (beyond the seed spread)" in flickr


def test_a_two_stage_row_says_so_and_its_exhaustive_ranking_is_the_headline():
    two_stage = _run(120.0, {"method": "two-stage", "k": 20}) | {"exhaustive": _run(90.0)}
    rows = _rows("flickr8k", {"bssan": [two_stage, two_stage], "dual": [_run(340.0)]})
    table = "\n".join(dataset_table(rows))
    assert "| BSSAN (full) | `bssan` | 2 | two-stage K=20 |" in table and "rsum, exhaustive" in table
    assert "| dual | `dual` | 1 | exhaustive |" in table
    report = "\n".join(reproduction_report({"flickr8k": rows}))
    assert "| BSSAN | 372.5 | 90.0 ± 0.0 |" in report  # the model's own ranking, not the shortlist's


def test_the_report_takes_records_of_todays_config_else_the_earlier_summary(tmp_path, monkeypatch):
    """--report-only trains nothing; a stale record (another config) is left out and counted."""
    monkeypatch.setattr(quality, "train_and_measure", lambda *a, **k: pytest.fail("trained in --report-only"))
    store = RecordStore(tmp_path / "quality.jsonl")
    arms = plan_for("emoji", {"cca", "dual"})
    digest = quality.arm_digest(arms[0], tmp_path)
    store.put({"dataset": "emoji", "model": "cca", "seed": 0, "digest": digest, "result": _run(200.0)})
    store.put({"dataset": "emoji", "model": "cca", "seed": 1, "digest": "another", "result": _run(999.0)})
    earlier = {"emoji": {"dual": {"seeds": 3, "ranking": {"method": "exhaustive"},
                                  "figures": {"rsum": [239.6, 22.9]}}}}
    rows = quality.rows_of("emoji", tmp_path, arms, RecordStore(store.path), earlier)
    assert [len(row.results) for row in rows] == [1, 0] and rows[0].stale == 1
    table = dataset_table(rows)
    assert table[2].startswith("| cca | `cca` | 1 | exhaustive |") and "| 200.0 |" in table[2]
    assert table[3].startswith("| dual | `dual` | 3† | exhaustive |") and "| 239.6 ± 22.9 |" in table[3]
    assert rows_not_run(quality.rows_of("emoji", tmp_path, arms, RecordStore(tmp_path / "none.jsonl"), {}))


def rows_not_run(rows: list[Row]) -> bool:
    return all("not run" in line for line in dataset_table(rows)[2:])


def test_summaries_of_one_seed_and_of_no_number():
    assert Summary.of([1.0]).text(1) == "1.0" and Summary.of([1.0, 3.0]).text(1) == "2.0 ± 1.4"
    assert Summary.of([float("nan")]).text(3) == "-" and Summary.of([]) is None


def test_adding_a_model_takes_its_module_and_a_config(tmp_path, monkeypatch):
    """A walk through adding a model: the class (here defined in the test, in practice a module of
    xmodal/models/) and one config. Nothing else is edited: the registry, the contract test, the
    plan, the speed benchmark and the public listing all pick it up."""
    import shutil

    import torch

    import xmodal.config
    from test_model_contract import test_model_contract
    from xmodal.models.base import EmbeddingModel, Params, Variant
    from xmodal.models.registry import MODELS, creatable_names

    class ToyParams(Params):
        dim: int = 8
        bias: bool = True

    class Toy(EmbeddingModel):
        name, label, description = "toy", "Toy", "a linear map per side (the walk-through's model)"
        image_inputs, text_inputs = ("global",), ("global",)
        Params = ToyParams
        variants = {"plain": Variant("Toy without bias", {"bias": False})}

        def __init__(self, spec, params):
            super().__init__(spec, params)
            self.image = torch.nn.Linear(spec.image_dim, params.dim, bias=params.bias)
            self.text = torch.nn.Linear(spec.text_dim, params.dim, bias=params.bias)

        def encode_images(self, images):
            return {"embedding": self.image(images["features"])}

        def encode_texts(self, texts):
            return {"embedding": self.text(texts["features"])}

        def loss(self, batch):
            scores = self.similarity(self.encode_images(batch.images), self.encode_texts(batch.texts))
            total = torch.nn.functional.cross_entropy(scores * 10, torch.arange(len(scores)))
            return {"total": total}

    monkeypatch.setitem(MODELS._entries, "toy", Toy)  # what @register does when xmodal/models/toy.py is imported
    configs = tmp_path / "configs"
    shutil.copytree(xmodal.config.CONFIG_ROOT, configs)
    (configs / "toy").mkdir()
    (configs / "toy" / "emoji.yaml").write_text("model: {name: toy, params: {dim: 16}}\ndata: {dataset: emoji}\n")
    monkeypatch.setattr(xmodal.config, "CONFIG_ROOT", configs)

    assert {"toy", "toy-plain"} <= set(creatable_names())
    rows = {arm.model: arm.label for arm in plan_for("emoji", {"toy"})}
    assert rows == {"toy": "Toy", "toy-plain": "Toy without bias"}
    assert speed_config("toy") == "toy/emoji"
    for variant in (None, "plain"):  # the contract test's own case
        test_model_contract((Toy, ("global",), ("global",), variant))


def test_the_attention_table_shows_each_map_and_the_pointing_game():
    from benchmarks.report import attention_table

    explained = _run(100.0) | {
        "attention": {"image": {"entropy": 0.9, "max_weight": 0.05, "uniform_weight": 1 / 64, "pairs": 200}},
        "pointing": {"image": {"accuracy": 0.5, "mass": 0.4, "chance": 0.25, "pairs": 500}}}
    rows = _rows("emoji", {"acln": [explained, explained], "dual": [_run(200.0)]})
    table = attention_table(rows)
    assert len(table) == 3 and table[2].startswith("| ACLN (shared attention) | `acln` | image | 0.900 ± 0.000 |")
    assert "| 0.500 ± 0.000 | 0.400 ± 0.000 | 0.250 ± 0.000 |" in table[2]
    assert attention_table(_rows("emoji", {"dual": [_run(200.0)]})) == []  # no row explains: no table


def test_the_mosaic_table_puts_each_model_beside_itself_on_the_plain_dataset():
    from benchmarks.report import mosaic_table

    pointed = _run(150.0) | {"pointing": {"word x region": {"accuracy": 0.5, "mass": 0.4, "chance": 0.25}}}
    tables = {"emoji": _rows("emoji", {"bssan": [_run(200.0), _run(210.0)], "dual": [_run(250.0)]}),
              "mosaic-emoji": _rows("mosaic-emoji", {"bssan": [pointed], "dual": []})}
    table = mosaic_table(tables)
    assert len(table) == 3  # header, rule, and only the mosaic row that has runs
    assert table[2].startswith("| mosaic-emoji | BSSAN (full) | `bssan` | 205.0 ± 7.1 (2) | 150.0 (1) | -55.0 |")
    assert table[2].endswith("| 0.500 (word x region) | 0.250 |")
    assert mosaic_table({"emoji": tables["emoji"]}) == []


def test_the_language_table_puts_each_language_beside_english_with_the_share_of_map_kept():
    from benchmarks.report import language_table

    def mapped(rsum: float, i2t: float, t2i: float) -> dict:
        run = _run(rsum)
        return run | {"i2t": run["i2t"] | {"map": i2t}, "t2i": run["t2i"] | {"map": t2i}}

    tables = {"emoji": _rows("emoji", {"dual": [mapped(250.0, 0.30, 0.34), mapped(254.0, 0.30, 0.30)]}),
              "emoji-zh": _rows("emoji-zh", {"dual": [mapped(210.0, 0.24, 0.24)], "cca": [mapped(260.0, 0.3, 0.3)]}),
              "emoji-ja": _rows("emoji-ja", {}), "emoji-ru": _rows("emoji-ru", {"dual": [mapped(200.0, 0.2, 0.2)]})}
    header, rule, *rows = language_table(tables)
    assert "zh MAP@all" in header and "ru / en MAP" in header and "ja" not in header  # ja has no runs
    dual = next(row for row in rows if "`dual`" in row)
    # English MAP: mean over runs of the two directions' mean, (0.32 + 0.30) / 2; zh keeps 0.24 / 0.31.
    assert dual.startswith("| dual | `dual` | `tfidf` | 0.310 ± 0.014 | 252.0 ± 2.8 | 0.240 | 210.0 | 0.200 | 200.0 |")
    assert dual.endswith("| 77% | 65% |")
    cca = next(row for row in rows if "`cca`" in row)
    assert cca.endswith("| - | - | 0.300 | 260.0 | - | - | - | - |")  # no English or ru run: no share
    tables["emoji-zh"] = _rows("emoji-zh", {"scanet": [mapped(50.0, 0.6, 0.6)]})
    scanet = next(row for row in language_table(tables) if "`scanet`" in row)
    # its config leaves the text input to the model (word counts over the graph): named, with the graph's source
    assert scanet.startswith("| SCANet (GCN, k = 2) | `scanet` | `bow` (ppmi word graph) |")
    tables["emoji-zh"] = _rows("emoji-zh", {"scan": [mapped(150.0, 0.3, 0.3)]})
    scan = next(row for row in language_table(tables) if "`scan`" in row)
    # its word table learns at its own lr (optim.group_lr words): named with its ratio to optim.lr
    assert "| `scan` | `words` (word table at lr 0.01, 20x) |" in scan
    assert language_table({"emoji": tables["emoji"]}) == []


def test_a_setting_added_later_leaves_earlier_records_valid_at_its_default():
    import hashlib
    import json

    from benchmarks.runner import config_digest
    from xmodal.config import load_config
    from xmodal.models.registry import resolve

    config = load_config("dual/emoji")
    without = config.model_dump(mode="json")
    del without["data"]["lang"], without["data"]["unknown_words"], without["data"]["graph_vectors"]  # not yet there
    cls, preset = resolve(config.model.name)
    without["model"] = {"name": cls.name, "params": preset | config.model.params}
    without["data"]["path"], without["train"]["seed"] = None, None
    earlier = hashlib.sha256(json.dumps(without, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert config_digest(config) == earlier
    assert config_digest(load_config("dual/emoji", ["data.lang=zh"])) != earlier  # a setting that is used counts
    assert config_digest(load_config("dual/emoji", ["data.unknown_words=random"])) != earlier
