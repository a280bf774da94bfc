"""A trained run goes anywhere: it carries its input pipeline, so with the dataset and the feature cache
gone (another folder, another machine) it still encodes, scores, indexes a folder, searches and
serves exactly as before the move; exported as one file it does the same (xmodal.trained)."""

from __future__ import annotations

import itertools
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from test_mosaic import colour_collection
from xmodal.cli import main
from xmodal.config import load_config
from xmodal.errors import XmodalError
from xmodal.factory import train_config
from xmodal.models.registry import model_classes
from xmodal.trained import load_run

QUERIES = ["a red square", "a blue square", "a purple square"]


def text_kinds() -> list[tuple[str, str]]:
    """(model, text kind) for every registered model and each text kind it (or a variant) reads."""
    cases = []
    for name, cls in model_classes().items():
        presets = [{}, *(variant.params for variant in cls.variants.values())]
        kinds = {kind for preset in presets for part in cls.input_parts("text", cls.Params(**preset)) for kind in part}
        cases += [(name, kind) for kind in sorted(kinds)]
    return cases


def small_config(tmp_path: Path, model: str, text: str) -> object:
    """One epoch of ``model`` on the colour collection, reading ``text``; image parts as the model prefers."""
    cls = model_classes()[model]
    params = {}
    if model == "scanet" and text != "bow":
        params["text_model"] = "lstm"
    images = [part[0] for part in cls.input_parts("image", cls.Params(**params))]
    config = {"model": {"name": model, "params": params},
              "data": {"dataset": "csv", "path": str(tmp_path / "colours" / "colours.csv"), "resolution": 64,
                       "image_input": images if len(images) > 1 else images[0], "text_input": text,
                       "graph_vertices": 12},
              "train": {"epochs": 1, "batch_size": 8}}
    return load_config(None, base=config)


@pytest.fixture
def colours(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    return colour_collection(tmp_path / "colours", {"train": 24, "val": 8, "test": 8})


def queries_folder(folder: Path) -> list[Path]:
    """Images the run never saw, to encode and index after the move."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, colour in enumerate([(200, 40, 40), (40, 40, 200), (120, 40, 160), (240, 230, 40)]):
        path = folder / f"new-{index}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        paths.append(path)
    return paths


def move_away(tmp_path: Path, monkeypatch, run: Path) -> Path:
    """Copy the run elsewhere; delete the dataset and every cache (a fresh XMODAL_HOME)."""
    moved = tmp_path / "elsewhere" / run.name
    shutil.copytree(run, moved)
    shutil.rmtree(tmp_path / "colours")
    shutil.rmtree(tmp_path / "home")
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "fresh-home"))
    return moved


@pytest.mark.slow
def test_every_model_and_text_input_scores_the_same_from_the_run_folder_alone(colours, tmp_path, monkeypatch):
    images = queries_folder(tmp_path / "new")
    before = {}
    for model, text in text_kinds():
        run_dir = tmp_path / "runs" / f"{model}-{text}"
        train_config(small_config(tmp_path, model, text), run_dir)
        run = load_run(run_dir)
        before[(model, text)] = run.similarity(run.encode_images(images), run.encode_texts(QUERIES))
    shutil.copytree(tmp_path / "runs", tmp_path / "moved")
    shutil.rmtree(tmp_path / "colours")
    shutil.rmtree(tmp_path / "home")
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "fresh-home"))
    for (model, text), expected in before.items():
        run = load_run(tmp_path / "moved" / f"{model}-{text}")
        scores = run.similarity(run.encode_images(images), run.encode_texts(QUERIES))
        torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5, msg=f"{model} with {text}")
    assert not (tmp_path / "fresh-home" / "features").exists()  # nothing was extracted for a dataset
    assert {kind for _, kind in before} >= {"global", "tokens", "words", "tfidf", "bow"}


@pytest.mark.slow
def test_a_moved_or_exported_run_indexes_searches_and_serves_as_before(colours, tmp_path, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    from xmodal.search.engine import SearchEngine
    from xmodal.search.service import create_app

    run_dir = tmp_path / "run"
    train_config(small_config(tmp_path, "jgcar", "words"), run_dir)  # a pairwise model: two-stage search
    folder = tmp_path / "new"
    queries_folder(folder)

    def hits(run: Path, index: Path) -> list[list[tuple[str, float]]]:
        assert main(["index", "build", str(run), "--collection", str(folder), "--out", str(index)]) == 0
        engine = SearchEngine.open(index, shortlist=10)
        found = [[(hit.id, hit.score) for hit in engine.search_text(query, k=4)] for query in QUERIES]
        client = TestClient(create_app(engine))
        served = client.post("/search", json={"text": QUERIES[0], "k": 4}).json()["hits"]
        assert [hit["id"] for hit in served] == [item for item, _ in found[0]]
        assert [hit["score"] for hit in served] == pytest.approx([score for _, score in found[0]], abs=1e-6)
        return found

    expected = hits(run_dir, tmp_path / "index-before")
    assert main(["export", str(run_dir), "-o", str(tmp_path / "jgcar.xmodal")]) == 0
    exported = tmp_path / "jgcar.xmodal"
    moved = move_away(tmp_path, monkeypatch, run_dir)
    shutil.move(str(exported), tmp_path / "elsewhere" / "jgcar.xmodal")
    for source in (moved, tmp_path / "elsewhere" / "jgcar.xmodal"):
        found = hits(source, tmp_path / f"index-{source.name}")
        for want, got in zip(expected, found):
            assert [item for item, _ in got] == [item for item, _ in want]
            assert [score for _, score in got] == pytest.approx([score for _, score in want], abs=1e-5)
    cached = tmp_path / "fresh-home" / "features"  # no features extracted: at most the file-hash cache
    assert [path.name for path in cached.rglob("*")] in ([], ["file-hashes.sqlite"])
    # A run and its index copied together (a backup, another machine) find each other by relative path.
    together = tmp_path / "together"
    shutil.copytree(run_dir, together / "run")
    shutil.copytree(tmp_path / "index-before", together / "index-before")
    shutil.rmtree(run_dir)
    engine = SearchEngine.open(together / "index-before")
    assert engine.run.folder == (together / "run").resolve()
    assert [hit.id for hit in engine.search_text(QUERIES[0], k=4)] == [item for item, _ in expected[0]]
    capsys.readouterr()
    with pytest.raises(XmodalError, match="needs the dataset run .* was trained on, and it is not there"):
        load_run(moved).evaluate()  # what needs the data says so, in one line


def test_an_exported_file_that_was_changed_or_is_foreign_is_refused(tmp_path):
    from xmodal.trained import read_export

    foreign = tmp_path / "foreign.xmodal"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("config.yaml", "model: {name: dual}")
    with pytest.raises(XmodalError, match="not an exported xmodal model"):
        read_export(foreign)
    (tmp_path / "junk.xmodal").write_bytes(b"not a zip at all")
    with pytest.raises(XmodalError, match="not a readable exported xmodal model"):
        read_export(tmp_path / "junk.xmodal")
    good = tmp_path / "good.xmodal"
    blob = b"weights"
    import hashlib
    import json

    manifest = {"format": 1, "files": {"model.safetensors": hashlib.sha256(blob).hexdigest()}}
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("export.json", json.dumps(manifest))
        archive.writestr("model.safetensors", blob)
    assert set(read_export(good)) == {"export.json", "model.safetensors"}
    tampered = tmp_path / "tampered.xmodal"
    with zipfile.ZipFile(tampered, "w") as archive:
        archive.writestr("export.json", json.dumps(manifest))
        archive.writestr("model.safetensors", b"other weights")
    with pytest.raises(XmodalError, match="'model.safetensors' does not match its SHA-256"):
        read_export(tampered)
    extra = tmp_path / "extra.xmodal"
    with zipfile.ZipFile(extra, "w") as archive:
        archive.writestr("export.json", json.dumps(manifest))
        archive.writestr("model.safetensors", blob)
        archive.writestr("../evil.py", b"print()")
    with pytest.raises(XmodalError, match="which its manifest does not list"):
        read_export(extra)


def test_the_cases_cover_every_text_kind_of_every_model():
    cases = text_kinds()
    assert {model for model, _ in cases} == set(model_classes())
    assert ("scanet", "bow") in cases and ("cca", "tfidf") in cases and ("bssan", "tokens") in cases
    assert len(cases) == len(set(cases)) == len(list(itertools.chain(cases)))


def test_a_run_from_before_pipelines_gets_one_from_its_data_or_says_how(tmp_path, capsys):
    from engine_helpers import write_dual_config, write_feature_dataset

    data = write_feature_dataset(tmp_path / "features")
    run = tmp_path / "run"
    train_config(load_config(write_dual_config(tmp_path / "c.yaml", data, epochs=1)), run)
    assert (run / "inputs" / "pipeline.json").is_file()
    shutil.rmtree(run / "inputs")  # as a run trained before runs kept their pipeline
    load_run(run)
    assert (run / "inputs" / "pipeline.json").is_file()  # written from the data on first load
    shutil.rmtree(run / "inputs")
    shutil.move(str(data), tmp_path / "moved-features")
    with pytest.raises(XmodalError, match=r"xmodal run complete .* --path DATA"):
        load_run(run)
    assert main(["run", "complete", str(run), "--path", str(tmp_path / "moved-features")]) == 0
    assert "wrote" in capsys.readouterr().out and load_run(run).pipeline.settings.dataset == "precomputed"
    with pytest.raises(XmodalError, match="free-text queries cannot be encoded"):  # a features-only dataset
        load_run(run).encode_texts(["a query"])
