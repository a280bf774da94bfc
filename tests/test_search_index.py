"""Search indexes: build, search (one and two stages), add/remove, backends, refusals.

Runs on a small CSV collection of coloured squares with the fake encoders of test_feature_store
(milliseconds per image), so the models are tiny and train in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from test_feature_store import colour, home  # noqa: F401  (the fixture: a private home, fake encoders)
from xmodal.api import load_run, train
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.eval.protocol import encode_split
from xmodal.eval.two_stage import two_stage_search
from xmodal.search.collection import read_collection
from xmodal.search.engine import SearchEngine
from xmodal.search.index import SearchIndex
from xmodal.search.vector_index import ExactIndex, FaissIndex, unit_rows

N_ITEMS = 30  # 18 train, 4 val, 8 test


def write_collection(folder: Path, n: int = N_ITEMS, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,caption,split"]
    for i in range(start, start + n):
        Image.new("RGB", (32, 32), colour(i)).save(folder / f"sq{i}.png")
        split = "train" if i % 5 < 3 or i >= N_ITEMS else ("val" if i % 5 == 3 and i < 20 else "test")
        rows += [f"sq{i}.png,colour number {i},{split}", f"sq{i}.png,a swatch called {i},{split}"]
    (folder / "collection.csv").write_text("\n".join(rows) + "\n")
    return folder / "collection.csv"


def write_config(path: Path, data: Path, model: dict, **data_extra) -> Path:
    config = {"model": model, "data": {"dataset": "csv", "path": str(data), **data_extra},
              "optim": {"name": "adam", "lr": 0.003},
              "train": {"epochs": 2, "batch_size": 8, "seed": 0, "early_stopping": {"metric": "rsum", "patience": 5}}}
    path.write_text(yaml.safe_dump(config))
    return path


DUAL = {"name": "dual", "params": {"dim": 16, "hidden": 32}}
JGCAR = {"name": "jgcar", "params": {"dim": 16, "phrase_dim": 16, "attention_dim": 8, "use_intra": False}}


@pytest.fixture
def trained(home, tmp_path):  # noqa: F811
    """A trained run per model kind: one-stage (dual) and pairwise (JGCAR on regions + tokens)."""
    csv = write_collection(tmp_path / "collection")
    runs = {"dual": tmp_path / "dual", "jgcar": tmp_path / "jgcar"}
    train(write_config(tmp_path / "dual.yaml", csv, DUAL), runs["dual"])
    train(write_config(tmp_path / "jgcar.yaml", csv, JGCAR, image_input="regions", text_input="tokens"),
          runs["jgcar"])
    return runs


def _cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("model", ["dual", "jgcar"])
def test_cli_and_api_rank_as_two_stage_evaluation_does(trained, tmp_path, capsys, model):
    run_folder, index_folder = trained[model], tmp_path / f"index-{model}"
    assert main(["index", "build", str(run_folder), "--collection", "split:test", "--out", str(index_folder)]) == 0
    engine = SearchEngine.open(index_folder, shortlist=3)
    assert engine.pairwise == (model == "jgcar")
    run = load_run(run_folder)
    split = run.split("test")
    images, texts = encode_split(run.model, split, run.device)
    image_ids = [run.dataset.items[i].id for i in split.item_indices]
    queries = [entry for entry in engine.index.sides["texts"].entries]
    assert len(queries) == split.n_texts == 16 and len(engine.index.sides["images"]) == 8
    reference = two_stage_search(run.model, images, texts, 3, "t2i")  # eval's ranking, text queries
    for row, entry in enumerate(queries):
        hits = engine.search_text(entry.source, k=3)
        if engine.pairwise:
            expected = [image_ids[i] for i in reference.indices[row].tolist()]
        else:
            expected = [image_ids[i] for i in torch.argsort(reference.first_stage[row], descending=True)[:3]]
        assert [hit.id for hit in hits] == expected
        cli = _cli_json(capsys, "search", str(index_folder), "--text", entry.source, "-k", "3", "--shortlist", "3")
        assert [(h["id"], round(h["score"], 5)) for h in cli["hits"]] == [(h.id, round(h.score, 5)) for h in hits]
        assert cli["two_stage"] == engine.pairwise
    image = engine.index.sides["images"].entries[0]
    by_image = engine.search_image(image.source, k=4)
    cli = _cli_json(capsys, "search", str(index_folder), "--image", image.source, "-k", "4", "--shortlist", "100")
    assert [h["id"] for h in cli["hits"]] == [hit.id for hit in by_image]
    assert all(hit.side == "texts" for hit in by_image)


def test_add_and_remove_equal_a_rebuilt_index(trained, tmp_path, capsys):
    run = trained["dual"]
    extra = write_collection(tmp_path / "more", n=6, start=100)
    full = tmp_path / "full"
    assert main(["index", "build", str(run), "--collection", str(extra), "--out", str(full)]) == 0
    assert main(["index", "remove", str(full), "sq100", "sq101", "sq103#1"]) == 0
    rebuilt_csv = tmp_path / "more" / "rebuilt.csv"
    lines = (tmp_path / "more" / "collection.csv").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if not line.startswith(("sq100.png", "sq101.png",
                                                                             "sq103.png,a swatch"))]
    rebuilt_csv.write_text("\n".join(kept) + "\n")
    rebuilt = tmp_path / "rebuilt"
    assert main(["index", "build", str(run), "--collection", str(rebuilt_csv), "--out", str(rebuilt)]) == 0

    grown = tmp_path / "grown"  # built from two images, then the rest added
    assert main(["index", "build", str(run), "--collection", str(tmp_path / "more" / "sq102.png"), "--out",
                 str(grown)]) == 2  # a single image is for `index add`
    assert "unknown collection file type '.png'" in capsys.readouterr().err
    first = tmp_path / "more" / "first.csv"
    first.write_text("image,caption\nsq102.png,colour number 102\n")
    assert main(["index", "build", str(run), "--collection", str(first), "--out", str(grown)]) == 0
    capsys.readouterr()
    assert main(["index", "add", str(grown), str(rebuilt_csv)]) == 0
    assert "added 3 image(s) and 6 text(s); 2 were indexed already" in capsys.readouterr().out
    assert main(["index", "add", str(grown), str(tmp_path / "more" / "sq104.png")]) == 0  # one file: known id
    assert "1 were indexed already" in capsys.readouterr().out

    indexes = [SearchIndex.open(folder) for folder in (full, rebuilt, grown)]
    assert [sorted(e.id for e in i.sides["images"].entries) for i in indexes] == [["sq102", "sq103", "sq104",
                                                                                   "sq105"]] * 3
    engines = [SearchEngine.open(folder) for folder in (full, rebuilt, grown)]
    for query in ("colour number 104", "a swatch called 102", "something else"):
        results = [[(h.id, round(h.score, 5)) for h in engine.search_text(query, k=4)] for engine in engines]
        assert results[0] == results[1] == results[2]
    assert len(list(full.glob("v*"))) == 2  # the live version and the one before it (a reader may be opening it)


def test_refusals_and_bad_input(trained, tmp_path, capsys):
    index_folder = tmp_path / "index"
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out", str(index_folder)]) == 0
    capsys.readouterr()
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out",
                 str(index_folder)]) == 2
    assert "already holds an index" in capsys.readouterr().err
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:nope", "--out",
                 str(tmp_path / "x")]) == 2
    assert "unknown split 'nope'" in capsys.readouterr().err
    # Another run (other weights) must not search this index.
    assert main(["search", str(index_folder), "--text", "colour", "--run", str(trained["jgcar"])]) == 2
    assert "rebuild the index" in capsys.readouterr().err
    assert main(["search", str(index_folder), "--text", "   "]) == 2
    assert "query text is empty" in capsys.readouterr().err
    assert main(["search", str(index_folder), "--text", "colour", "-k", "0"]) == 2
    assert "k must be between 1" in capsys.readouterr().err
    before = (index_folder / "CURRENT").read_text()
    assert main(["index", "remove", str(index_folder), "sq4", "../../etc/passwd"]) == 2
    assert "no item '../../etc/passwd'" in capsys.readouterr().err
    assert (index_folder / "CURRENT").read_text() == before  # nothing removed
    assert main(["search", str(tmp_path), "--text", "colour"]) == 2
    assert "is not a search index" in capsys.readouterr().err
    # A version folder left by a crash before CURRENT moved is ignored, then replaced.
    (index_folder / "v000002").mkdir()
    (index_folder / "v000002" / "manifest.json").write_text("{half")
    assert len(SearchIndex.open(index_folder).sides["images"]) == 8
    assert main(["index", "remove", str(index_folder), "sq4"]) == 0
    assert len(SearchIndex.open(index_folder).sides["images"]) == 7


def test_min_score_and_explain(trained, tmp_path):
    index_folder = tmp_path / "index"
    build = ["index", "build", str(trained["jgcar"]), "--collection", "split:test", "--out", str(index_folder)]
    assert main(build) == 0
    engine = SearchEngine.open(index_folder)
    hits = engine.search_text("colour number 4", k=6)
    cut = engine.search_text("colour number 4", k=6, min_score=hits[2].score)
    assert [h.id for h in cut] == [h.id for h in hits[:3]]
    attention = engine.explain(hits[0].id, text="colour number 4")
    assert attention is not None and attention.maps
    with pytest.raises(XmodalError, match="is an image: explain it with a text query"):
        engine.explain(hits[0].id, image=hits[0].source)


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_backends_rank_as_exact_does_and_reload(trained, tmp_path, backend):
    if backend == "milvus":
        pytest.importorskip("milvus_lite", reason="Milvus Lite (pip install milvus-lite) is not installed")
    folders = {name: tmp_path / name for name in ("exact", backend)}
    for name, folder in folders.items():
        assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out", str(folder),
                     "--backend", name]) == 0
    for folder in folders.values():
        assert main(["index", "remove", str(folder), "sq9", "sq4#1"]) == 0
    engines = {name: SearchEngine.open(folder) for name, folder in folders.items()}
    for query in ("colour number 9", "a swatch called 29", "colour"):
        results = [[(h.id, round(h.score, 4)) for h in engine.search_text(query, k=5)] for engine in engines.values()]
        assert results[0] == results[1] and "sq9" not in [hit_id for hit_id, _ in results[0]]
    image = engines["exact"].index.sides["images"].entries[0].source
    assert [h.id for h in engines["exact"].search_image(image, k=5)] == [h.id for h in
                                                                        engines[backend].search_image(image, k=5)]
    manifest = engines[backend].index.manifest
    assert manifest["backend"] == backend and manifest["sides"]["images"]["items"] == 7
    if backend == "milvus":  # the vectors live in Milvus Lite, in one file beside the versions
        assert (folders["milvus"] / "milvus.db").exists()
        old = manifest["sides"]["images"]["options"]["collection"]
        assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out",
                     str(folders["milvus"]), "--backend", "milvus", "--overwrite"]) == 0
        rebuilt = SearchIndex.open(folders["milvus"])
        assert rebuilt.sides["images"].vectors.options["collection"] != old
        assert not rebuilt.sides["images"].vectors.client.has_collection(old)  # the replaced index's vectors


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_faiss_backends_find_what_exact_finds(kind, tmp_path):
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.normal(size=(500, 32)))
    keys = np.arange(1000, 1500)
    exact, approximate = ExactIndex(32), FaissIndex(32, {"kind": kind})
    for index in (exact, approximate):
        index.add(keys, vectors)
        index.remove(keys[:50])
    queries = unit_rows(rng.normal(size=(20, 32)))
    expected_scores, expected_keys = exact.search(queries, 10)
    scores, found = approximate.search(queries, 10)
    assert len(approximate) == 450
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected_keys)]) >= 0.95
    approximate.save(tmp_path)
    reloaded = FaissIndex.load(tmp_path, 32, approximate.options)
    np.testing.assert_array_equal(reloaded.search(queries, 10)[1], found)
    if kind == "flat":  # exact search: the same scores
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_faiss_ivfpq_trains_on_enough_vectors_and_says_when_too_few(tmp_path):
    import faiss

    rng = np.random.default_rng(1)
    with pytest.raises(XmodalError, match="needs at least 256 .*use --backend exact"):
        FaissIndex(32, {"kind": "ivfpq"}).add(np.arange(100), unit_rows(rng.normal(size=(100, 32))))
    index = FaissIndex(32, {"kind": "ivfpq", "nprobe": 8})
    index.add(np.arange(3000), unit_rows(rng.normal(size=(3000, 32))))
    assert index.options["nlist"] >= 1 and index.options["pq_m"] == 32 and len(index) == 3000
    queries = unit_rows(rng.normal(size=(5, 32)))
    index.remove(np.arange(10))
    index.save(tmp_path)
    reloaded = FaissIndex.load(tmp_path, 32, index.options)
    assert len(reloaded) == 2990 and faiss.downcast_index(reloaded.index.index).nprobe == 8
    np.testing.assert_array_equal(reloaded.search(queries, 5)[1], index.search(queries, 5)[1])


def test_text_file_and_folder_collections(tmp_path):
    (tmp_path / "texts.txt").write_text("a red square\n\n  a blue   square \n")
    texts = read_collection(str(tmp_path / "texts.txt"))
    assert [(e.id, e.source) for e in texts.texts] == [("line-1", "a red square"), ("line-3", "a blue square")]
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "sub" / "b.jpg")
    (tmp_path / "photos" / "a.txt").write_text("first\nsecond\n")
    folder = read_collection(str(tmp_path / "photos"))
    assert [e.id for e in folder.images] == ["a", "sub/b"] and [e.id for e in folder.texts] == ["a#0", "a#1"]
    with pytest.raises(XmodalError, match="no such file or folder"):
        read_collection(str(tmp_path / "missing"))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_exact_backend_stores_16_bit_vectors_and_ranks_as_float32_does(tmp_path, dtype):
    rng = np.random.default_rng(0)
    vectors, queries = unit_rows(rng.normal(size=(500, 32))), unit_rows(rng.normal(size=(20, 32)))
    keys = np.arange(500, dtype=np.int64) * 3
    full, half = ExactIndex(32), ExactIndex(32, {"dtype": dtype})
    full.add(keys, vectors)
    half.add(keys, vectors)
    assert half.vectors.dtype == getattr(torch, dtype) and half.vectors.element_size() == 2
    (folder := tmp_path / dtype).mkdir()
    half.save(folder)
    loaded = ExactIndex.load(folder, 32, {"dtype": dtype})
    assert torch.equal(loaded.vectors, half.vectors) and np.array_equal(loaded.keys, keys)
    scores, found = loaded.search(queries, 10)
    exact_scores, exact_found = full.search(queries, 10)
    assert scores.dtype == np.float32
    assert np.abs(scores - exact_scores).max() < (0.02 if dtype == "bfloat16" else 0.002)  # rounding only
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact_found)]) > 0.9
    with pytest.raises(XmodalError, match="stored as uint16|stored as float16"):
        ExactIndex.load(folder, 32, {"dtype": "float32"})
    with pytest.raises(XmodalError, match="choose one of float32, bfloat16, float16"):
        ExactIndex(32, {"dtype": "int8"})


def test_an_index_built_with_bfloat16_vectors_says_so_and_ranks_as_float32_does(trained, tmp_path, capsys):
    indexes = {}
    for dtype in ("float32", "bfloat16"):
        indexes[dtype] = tmp_path / dtype
        assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out",
                     str(indexes[dtype]), "--dtype", dtype]) == 0
    capsys.readouterr()
    assert main(["index", "info", str(indexes["bfloat16"])]) == 0
    assert "bfloat16" in capsys.readouterr().out
    hits = {dtype: {hit.id: hit.score for hit in SearchEngine.open(folder).search_text("colour number 9", k=8)}
            for dtype, folder in indexes.items()}
    assert set(hits["bfloat16"]) == set(hits["float32"])  # every test image, each scored within rounding
    assert max(abs(hits["bfloat16"][key] - score) for key, score in hits["float32"].items()) < 0.02
    capsys.readouterr()
    assert main(["index", "build", str(trained["dual"]), "--collection", "split:test", "--out", str(tmp_path / "f"),
                 "--backend", "faiss", "--dtype", "bfloat16"]) == 2
    assert "--dtype bfloat16 is an option of --backend exact" in capsys.readouterr().err
