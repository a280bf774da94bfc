import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import subset
from xmodal.cli import main
from xmodal.data.collection import read_csv, read_folder, read_jsonl
from xmodal.data.images import load_rgb
from xmodal.data.records import Dataset, Item
from xmodal.encoders.image import ImageFeatures
from xmodal.encoders.minilm import TextFeatures
from xmodal.errors import DataError
from xmodal.features.extract import ExtractOptions, extract

TESTS = Path(__file__).parent


def colour(i: int) -> tuple[int, int, int]:
    return ((60 * i) % 256, (255 - 37 * i) % 256, (23 * i) % 256)


def toy_dataset(root: Path, n: int = 4, name: str = "toy") -> Dataset:
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = root / f"{i}.png"
        if not path.exists():  # keep mtimes: an unchanged image is not even re-read
            Image.new("RGB", (32, 32), colour(i)).save(path)
        texts = (f"colour number {i}", f"a swatch {i}")
        items.append(Item(str(i), path, texts, (i % 2,), "train" if i < 3 else "test"))
    return Dataset(name, items, label_names=["even", "odd"], source=str(root))


# -- fast stand-ins for the encoders, so cache behaviour is tested in milliseconds -----------------


class FakeEffnet:
    """Deterministic per image (from its pixels), counts the images it encodes."""

    images = 0
    calls = 0

    def __init__(self, resolution: int = 224, device: str | torch.device = "cpu"):
        self.resolution = resolution
        self.grid_side = resolution // 32

    def encode(self, images: list) -> ImageFeatures:
        FakeEffnet.images += len(images)
        FakeEffnet.calls += 1
        means = torch.tensor(np.stack([np.asarray(im, dtype=np.float32).mean((0, 1)) / 255 for im in images]))
        channels = means[:, torch.arange(1280) % 3]  # [B, 1280]
        grid = channels[:, None, :] + torch.arange(self.grid_side**2, dtype=torch.float32)[None, :, None] / 64
        return ImageFeatures(grid=grid, pooled=grid.mean(1))


class FakeTokenizer:
    def __call__(self, texts: list[str], truncation: bool = True, max_length: int = 64) -> dict:
        return {"input_ids": [[101] + [7] * len(text.split()) + [102] for text in texts]}


class FakeMiniLM:
    """Deterministic per text (seeded by its hash), counts the texts it encodes."""

    texts = 0

    def __init__(self, max_length: int = 64, device: str | torch.device = "cpu"):
        self.max_length = max_length
        self.tokenizer = FakeTokenizer()

    def encode(self, texts: list[str]) -> TextFeatures:
        FakeMiniLM.texts += len(texts)
        lengths = [min(len(text.split()) + 2, self.max_length) for text in texts]
        tokens = torch.zeros(len(texts), max(lengths), 384)
        for row, (text, length) in enumerate(zip(texts, lengths)):
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            tokens[row, :length] = torch.from_numpy(np.random.default_rng(seed).standard_normal((length, 384)))
        sentence = torch.nn.functional.normalize(tokens.sum(1), dim=-1)
        return TextFeatures(tokens=tokens, lengths=torch.tensor(lengths), sentence=sentence,
                            windows=torch.ones(len(texts), dtype=torch.long))

    def windows(self, texts: list[str]) -> list[list["FakeWindow"]]:
        """One window per text (the fakes never cut), carrying its text for :meth:`encode_windows`."""
        return [[FakeWindow(text, min(len(text.split()) + 2, self.max_length))] for text in texts]

    def encode_windows(self, windows: list[list["FakeWindow"]]) -> TextFeatures:
        return self.encode([text_windows[0].text for text_windows in windows])


class FakeWindow(list):
    """A window of ``length`` fake word-piece ids that remembers its text."""

    def __init__(self, text: str, length: int):
        super().__init__([7] * length)
        self.text = text


def install_fakes() -> None:
    import xmodal.encoders.image
    import xmodal.encoders.minilm

    xmodal.encoders.image.EfficientNetLite0 = FakeEffnet
    xmodal.encoders.minilm.MiniLM = FakeMiniLM


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    """A private XMODAL_HOME (fake features must never reach the real encoders' cache) and the fakes."""
    home = tmp_path / "home"
    monkeypatch.setenv("XMODAL_HOME", str(home))
    monkeypatch.setattr("xmodal.encoders.image.EfficientNetLite0", FakeEffnet)
    monkeypatch.setattr("xmodal.encoders.minilm.MiniLM", FakeMiniLM)
    FakeEffnet.images = FakeEffnet.calls = FakeMiniLM.texts = 0
    return home


def views(home: Path, dataset: str, extractor: str) -> list[Path]:
    return sorted(p for p in (home / "features" / dataset).glob(f"{extractor}-*") if ".tmp-" not in p.name)


def shards(home: Path, extractor: str) -> list[Path]:
    return sorted(p for p in (home / "features" / "_store").glob(f"{extractor}-*/*")
                  if p.is_dir() and ".tmp-" not in p.name)


def temporaries(home: Path) -> list[Path]:
    return [p for p in (home / "features").rglob("*") if ".tmp-" in p.name]


def expected_pooled(paths: list[Path], resolution: int = 224) -> np.ndarray:
    """What the fake encoder gives each image on its own (not counted as cache work)."""
    counts = FakeEffnet.images, FakeEffnet.calls
    pooled = FakeEffnet(resolution).encode([load_rgb(p, resolution) for p in paths]).pooled.numpy()
    FakeEffnet.images, FakeEffnet.calls = counts
    return pooled


def expected_sentences(texts: list[str]) -> np.ndarray:
    count = FakeMiniLM.texts
    sentences = FakeMiniLM().encode(texts).sentence.numpy()
    FakeMiniLM.texts = count
    return sentences


def all_texts_of(dataset: Dataset) -> list[str]:
    return [text for item in dataset.items for text in item.texts]


def age(paths, seconds: float = 3600) -> None:
    """Set modification times in the past (a just-written file is hashed but not memoised)."""
    past = time.time_ns() - int(seconds * 1e9)
    for path in paths:
        os.utime(path, ns=(past, past))


# -- words: collection-dependent, keyed by the collection's texts ---------------------------------


def test_words_cache_hit_and_contents(tmp_path):
    dataset = toy_dataset(tmp_path / "imgs")
    first = extract(dataset, "words", ExtractOptions())
    second = extract(dataset, "words", ExtractOptions())
    assert not first.cached and second.cached and first.features.path == second.features.path
    ids = second.features.array("ids")
    assert ids.shape == (8, 3) and isinstance(ids, np.memmap)
    assert second.features.manifest["vocabulary"] == len(second.features.sparse("bow").toarray()[0])
    # 8 texts x 3 words, less the two "3"s of the test item, unseen in the training vocabulary
    assert second.features.sparse("bow").toarray().sum() == 8 * 3 - 2


def test_words_key_follows_texts_and_training_split_only(home, tmp_path):
    dataset = toy_dataset(tmp_path / "imgs")
    first = extract(dataset, "words", ExtractOptions()).features.path
    Image.new("RGB", (40, 40)).save(dataset.items[0].image)  # images do not enter words features
    assert extract(dataset, "words", ExtractOptions()).cached
    items = list(dataset.items)
    items[3] = Item("3", items[3].image, items[3].texts, items[3].labels, "train")  # the vocabulary changes
    moved = extract(Dataset("toy", items, dataset.label_names, source=dataset.source), "words", ExtractOptions())
    assert not moved.cached and moved.features.path != first
    assert views(home, "toy", "words") == [moved.features.path]  # the superseded view of this source is gone


# -- per-item keys ---------------------------------------------------------------------------------


def test_editing_one_caption_re_encodes_only_that_text(home, tmp_path):
    dataset = toy_dataset(tmp_path / "imgs", 6)
    first_images = extract(dataset, "effnet", ExtractOptions())
    first_texts = extract(dataset, "minilm", ExtractOptions())
    assert first_images.features.manifest["encoded"] == 6 and first_texts.features.manifest["encoded"] == 12
    assert FakeEffnet.images == 6 and FakeMiniLM.texts == 12

    items = list(dataset.items)
    items[2] = Item("2", items[2].image, ("an edited caption", items[2].texts[1]), items[2].labels, items[2].split)
    edited = Dataset("toy", items, dataset.label_names, source=dataset.source)
    images = extract(edited, "effnet", ExtractOptions())
    texts = extract(edited, "minilm", ExtractOptions())
    assert images.cached and images.features.path == first_images.features.path
    assert not texts.cached and texts.features.manifest["encoded"] == 1 and FakeMiniLM.texts == 13
    assert FakeEffnet.images == 6
    np.testing.assert_allclose(texts.features.array("sentence"), expected_sentences(all_texts_of(edited)), atol=1e-6)
    lengths = texts.features.array("lengths")
    assert lengths[4] == 5 and texts.features.manifest["max_tokens"] == texts.features.array("tokens").shape[1] == 5
    assert views(home, "toy", "minilm") == [texts.features.path]


def test_changed_or_added_images_are_encoded_alone(home, tmp_path):
    dataset = toy_dataset(tmp_path / "imgs", 6)
    extract(dataset, "effnet", ExtractOptions(chunk_images=4))
    Image.new("RGB", (32, 32), (1, 2, 3)).save(dataset.items[1].image)  # replaced in place
    changed = extract(dataset, "effnet", ExtractOptions(chunk_images=4))
    assert changed.features.manifest["encoded"] == 1 and FakeEffnet.images == 7
    grown = toy_dataset(tmp_path / "imgs", 8)
    added = extract(grown, "effnet", ExtractOptions(chunk_images=4))
    assert added.features.manifest["encoded"] == 2 and FakeEffnet.images == 9
    pooled = added.features.array("pooled")
    assert pooled.shape == (8, 1280) and added.features.array("grid").shape == (8, 49, 1280)
    np.testing.assert_allclose(pooled, expected_pooled([item.image for item in grown.items]), atol=1e-3)
    assert views(home, "toy", "effnet") == [added.features.path]
    assert len(shards(home, "effnet")) == 4  # 6 images in chunks of 4, then 1, then 2


@pytest.mark.parametrize("ahead", [False, True], ids=["in-turn", "decoded-ahead"])
def test_a_bad_image_in_a_later_chunk_stops_after_the_chunks_before_it_are_committed(home, tmp_path, monkeypatch,
                                                                                     ahead):
    """Chunks decoded in turn (CPU) or one ahead of the encoder in a background thread (GPU): either
    way the error surfaces in order, naming the file, after the earlier chunks were stored and
    before any later one."""
    import xmodal.features.extract as extract_module

    real = extract_module._decoded_ahead
    monkeypatch.setattr(extract_module, "_decoded_ahead", lambda *args, **kwargs: real(*args, ahead=ahead))
    dataset = toy_dataset(tmp_path / "imgs", 7)
    dataset.items[4].image.write_bytes(dataset.items[4].image.read_bytes()[:60])  # truncated, in chunk 2 of 3
    with pytest.raises(DataError, match=r"4\.png: unreadable or truncated image"):
        extract(dataset, "effnet", ExtractOptions(chunk_images=3))
    assert FakeEffnet.images == 3 and len(shards(home, "effnet")) == 1 and views(home, "toy", "effnet") == []
    skipped = extract(dataset, "effnet", ExtractOptions(chunk_images=3, skip_bad=True)).features
    assert skipped.bad_items == ["4"] and skipped.manifest["encoded"] == 3  # chunk 1 came from the store
    np.testing.assert_allclose(skipped.array("pooled")[[0, 1, 2, 3, 5, 6]],
                               expected_pooled([item.image for i, item in enumerate(dataset.items) if i != 4]),
                               atol=1e-3)


def write_collection(root: Path, n: int = 5) -> tuple[Path, Path, Path]:
    """The same images and captions as a folder with sidecars, a CSV and a JSONL (in another order)."""
    images = root / "images"
    images.mkdir(parents=True)
    rows, lines = ["image,caption"], []
    for i in range(n):
        Image.new("RGB", (32, 32), colour(i)).save(images / f"p{i}.png")
        captions = [f"photo {i}", f"picture number {i}"]
        (images / f"p{i}.txt").write_text("\n".join(captions) + "\n")
        rows += [f"images/p{i}.png,{caption}" for caption in captions]
        lines.append(json.dumps({"image": f"images/p{i}.png", "captions": captions}))
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    (root / "list.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    return images, root / "list.csv", root / "list.jsonl"


def test_same_images_through_csv_jsonl_and_folder_share_the_cache(home, tmp_path):
    folder, csv_file, jsonl_file = write_collection(tmp_path / "collection")
    from_csv = extract(read_csv(csv_file), "effnet", ExtractOptions())
    assert from_csv.features.manifest["encoded"] == 5
    for dataset in (read_jsonl(jsonl_file), read_folder(folder)):
        images = extract(dataset, "effnet", ExtractOptions())
        texts = extract(dataset, "minilm", ExtractOptions())
        assert images.cached and images.features.manifest["encoded"] == 0
        np.testing.assert_allclose(images.features.array("pooled"),
                                   expected_pooled([item.image for item in dataset.items]), atol=1e-3)
        np.testing.assert_allclose(texts.features.array("sentence"), expected_sentences(all_texts_of(dataset)),
                                   atol=1e-6)
    assert FakeEffnet.images == 5 and FakeMiniLM.texts == 10  # the folder reuses the JSONL's texts too


def test_bad_images_are_listed_and_never_cached(home, tmp_path):
    dataset = toy_dataset(tmp_path / "imgs", 5)
    dataset.items[1].image.write_bytes(dataset.items[1].image.read_bytes()[:60])  # truncated
    dataset.items[3].image.unlink()  # missing
    with pytest.raises(DataError, match=r"3\.png: image file not found"):
        extract(dataset, "effnet", ExtractOptions())
    assert FakeEffnet.images == 0  # a missing file is found before any work
    skipped = extract(dataset, "effnet", ExtractOptions(skip_bad=True)).features
    assert skipped.bad_items == ["1", "3"] and len(skipped.manifest["skipped"]) == 2
    pooled = skipped.array("pooled")
    assert not pooled[1].any() and not pooled[3].any() and pooled[[0, 2, 4]].all(axis=1).all()
    stored = [key for shard in shards(home, "effnet")
              for key in json.loads((shard / "manifest.json").read_text())["keys"]]
    assert len(stored) == 3  # the truncated image's content has no features in the store
    assert extract(dataset, "effnet", ExtractOptions()).features.bad_items == ["1", "3"]  # cached view
    toy_dataset(tmp_path / "imgs", 5)  # the missing image comes back
    Image.new("RGB", (32, 32), colour(1)).save(dataset.items[1].image)  # and the truncated one is fixed
    fixed = extract(dataset, "effnet", ExtractOptions())
    assert fixed.features.bad_items == [] and fixed.features.manifest["encoded"] == 2 and FakeEffnet.images == 5


def test_force_re_encodes_and_drops_the_shards_it_replaces(home, tmp_path):
    dataset = toy_dataset(tmp_path / "imgs", 5)
    extract(dataset, "effnet", ExtractOptions(chunk_images=2))
    before = shards(home, "effnet")
    forced = extract(dataset, "effnet", ExtractOptions(chunk_images=2), force=True)
    assert forced.features.manifest["encoded"] == 5 and FakeEffnet.images == 10
    after = shards(home, "effnet")
    assert len(after) == 3 and not set(before) & set(after)
    np.testing.assert_allclose(forced.features.array("pooled"),
                               expected_pooled([item.image for item in dataset.items]), atol=1e-3)


@pytest.mark.slow
def test_effnet_features_match_the_encoder_and_skip_bad(tmp_path, monkeypatch):
    from xmodal.encoders.image import EfficientNetLite0

    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    dataset = toy_dataset(tmp_path / "imgs")
    features = extract(dataset, "effnet", ExtractOptions(batch_size=3, chunk_images=3)).features
    assert features.array("grid").shape == (4, 49, 1280) and features.array("grid").dtype == np.float16
    direct = EfficientNetLite0(224).encode([load_rgb(dataset.items[3].image)]).pooled[0].numpy()
    np.testing.assert_allclose(features.array("pooled")[3], direct, rtol=1e-4, atol=1e-4)

    dataset.items[1].image.write_bytes(dataset.items[1].image.read_bytes()[:60])  # truncate
    with pytest.raises(DataError, match=r"1\.png: unreadable or truncated image"):
        extract(dataset, "effnet", ExtractOptions())
    skipped = extract(dataset, "effnet", ExtractOptions(skip_bad=True)).features
    assert skipped.bad_items == ["1"] and not skipped.array("pooled")[1].any() and skipped.array("pooled")[2].any()
    assert skipped.manifest["encoded"] == 0  # the other three come from the store


# -- resume after a kill, stale temporaries ------------------------------------------------------


def test_killed_image_extraction_resumes_from_committed_chunks(home, tmp_path):
    """SIGKILL while encoding the third chunk of 3: the rerun encodes only the 4 images not committed."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from test_feature_store import FakeEffnet, install_fakes, toy_dataset
        import xmodal.features.extract as ex
        install_fakes()
        real = FakeEffnet.encode
        def dying(self, images):
            if FakeEffnet.calls == 2:  # two chunks committed, the third being written
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, images)
        FakeEffnet.encode = dying
        ex.extract(toy_dataset(Path({str(tmp_path / 'imgs')!r}), 10), "effnet",
                   ex.ExtractOptions(batch_size=3, chunk_images=3))
    """)
    toy_dataset(tmp_path / "imgs", 10)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "XMODAL_HOME": str(home)},
                            capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert len(shards(home, "effnet")) == 2 and views(home, "toy", "effnet") == []  # nothing looks complete
    leftover = temporaries(home)
    assert len(leftover) == 1 and (leftover[0] / "grid.npy").exists() and not (leftover[0] / "manifest.json").exists()

    dataset = toy_dataset(tmp_path / "imgs", 10)
    rerun = extract(dataset, "effnet", ExtractOptions(batch_size=3, chunk_images=3))
    assert rerun.features.manifest["encoded"] == 4 and FakeEffnet.images == 4
    np.testing.assert_allclose(rerun.features.array("pooled"),
                               expected_pooled([item.image for item in dataset.items]), atol=1e-3)
    assert temporaries(home) == []


def test_killed_words_extraction_leaves_nothing_complete(home, tmp_path):
    """SIGKILL after every array is written but before the manifest: nothing at the final path."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from test_feature_store import toy_dataset
        import xmodal.features.extract as ex
        from xmodal.features.extractors import EXTRACTORS
        words = EXTRACTORS.get("words")
        real = words.collection
        def dying(dataset, writer, options):
            real(dataset, writer, options)  # every array written...
            os.kill(os.getpid(), signal.SIGKILL)  # ...then killed before the manifest
        object.__setattr__(words, "collection", dying)  # the declaration is frozen; this process ends here
        ex.extract(toy_dataset(Path({str(tmp_path / 'imgs')!r})), "words", ex.ExtractOptions())
    """)
    toy_dataset(tmp_path / "imgs")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "XMODAL_HOME": str(home)},
                            capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    leftover = temporaries(home)
    assert len(leftover) == 1 and (leftover[0] / "ids.npy").exists() and views(home, "toy", "words") == []
    rerun = extract(toy_dataset(tmp_path / "imgs"), "words", ExtractOptions())
    assert not rerun.cached and (rerun.features.path / "manifest.json").exists() and temporaries(home) == []


def test_stale_temporaries_of_any_key_are_removed_live_ones_kept(home, tmp_path):
    from xmodal.paths import temp_prefix

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        features = home / "features"
        dead_prefix = temp_prefix("x").replace(f"-{os.getpid()}-", f"-{done.pid}-").removeprefix("x")
        live_prefix = temp_prefix("x").replace(f"-{os.getpid()}-", f"-{live.pid}-").removeprefix("x")
        stale = [features / "other" / f"effnet-0123{dead_prefix}ab",  # another dataset's view
                 features / "_store" / "minilm-abc" / f"0001{dead_prefix}cd",  # a shard
                 features / "other" / f"manifest.json{dead_prefix}ef",  # a file
                 features / "other" / "words-1.tmp-oldname"]  # an older xmodal's, an hour old
        kept = [features / "other" / f"effnet-4567{live_prefix}gh",  # its writer still runs
                features / "other" / "effnet-89.tmp-otherhost-1-ij",  # another machine's writer
                features / "other" / "words-2.tmp-youngname"]  # an older xmodal's, just made
        for path in stale + kept:
            path.parent.mkdir(parents=True, exist_ok=True)
            if "manifest" in path.name:
                path.write_text("")
            else:
                path.mkdir()
        age([stale[3]], 2 * 3600)
        extract(toy_dataset(tmp_path / "imgs"), "words", ExtractOptions())
        assert [p.exists() for p in stale] == [False] * 4 and all(p.exists() for p in kept)
        live.kill()
        live.wait()
        extract(toy_dataset(tmp_path / "imgs"), "words", ExtractOptions())
        assert not kept[0].exists() and kept[1].exists()
    finally:
        live.kill()
        live.wait()


# -- no needless work, no mutation -----------------------------------------------------------------


def test_extract_reads_options_and_never_fingerprints_the_dataset(home, tmp_path, monkeypatch):
    options = ExtractOptions(image_resolution=256, batch_size=2, chunk_images=3, skip_bad=True)
    before = copy.deepcopy(options)

    def no_fingerprint(self):
        raise AssertionError("extract must not stat and hash the whole dataset")

    monkeypatch.setattr(Dataset, "fingerprint", no_fingerprint)
    dataset = toy_dataset(tmp_path / "imgs")
    for name in ("effnet", "minilm", "words"):
        extract(dataset, name, options)
    assert options == before
    assert extract(dataset, "effnet", options).features.array("grid").shape == (4, 64, 1280)


def test_images_are_hashed_once_per_call_and_memoised_across_processes(home, tmp_path, monkeypatch):
    import xmodal.file_hashes as store

    hashed: list[Path] = []
    real = store.hash_file
    monkeypatch.setattr(store, "hash_file", lambda path: hashed.append(path) or real(path))
    dataset = toy_dataset(tmp_path / "imgs", 6)
    age([item.image for item in dataset.items])
    features = extract(dataset, "effnet", ExtractOptions()).features
    assert len(hashed) == 6
    for _ in range(3):
        features.array("grid")[[0, 2]], features.array("pooled")[1], features.bad_items
    assert len(hashed) == 6  # reading arrays hashes nothing
    monkeypatch.setattr(store, "_MEMO", {})  # as a new process: the on-disk memo answers
    assert extract(dataset, "effnet", ExtractOptions()).cached and len(hashed) == 6
    Image.new("RGB", (32, 32), (9, 9, 9)).save(dataset.items[4].image)
    age([dataset.items[4].image], 10)
    assert extract(dataset, "effnet", ExtractOptions()).features.manifest["encoded"] == 1
    assert hashed[6:] == [dataset.items[4].image]


def test_a_just_written_image_is_not_memoised(home, tmp_path, monkeypatch):
    """Rewritten within its modification-time tick, an image could keep size and mtime: re-read it."""
    import xmodal.file_hashes as store

    dataset = toy_dataset(tmp_path / "imgs", 2)
    store.file_keys([item.image for item in dataset.items])
    assert not any(str(item.image.absolute()) == memo[0] for memo in store._MEMO for item in dataset.items)


def test_a_replaced_file_is_re_read_even_with_its_old_size_and_mtime(home, tmp_path):
    """`cp -p` / `rsync -t` can bring other bytes with the same size and mtime: the inode and ctime tell."""
    from xmodal.file_hashes import file_keys

    path = tmp_path / "a.bin"
    path.write_bytes(b"a" * 100)
    age([path])
    before = file_keys([path])
    old = path.stat()
    replacement = tmp_path / "b.bin"
    replacement.write_bytes(b"b" * 100)
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(replacement, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert file_keys([path]) != before and file_keys([tmp_path / "missing.bin"]) == [None]


# -- other datasets, the command line ----------------------------------------------------------------


def test_feature_datasets_are_not_re_encoded(wikipedia_dir):
    from xmodal.data.wikipedia import read_wikipedia_features
    from xmodal.errors import XmodalError

    with pytest.raises(XmodalError, match="ships image features"):
        extract(read_wikipedia_features(wikipedia_dir), "effnet", ExtractOptions())


@pytest.mark.slow
def test_cli_extract_on_real_emoji_subset(emoji_dataset, monkeypatch, capsys, tmp_path):
    """`xmodal extract` end to end on 8 real emojis per split; the second run is a cache hit."""
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    small = subset(emoji_dataset, 8)
    monkeypatch.setattr("xmodal.api.read_dataset", lambda *a, **k: small)
    assert main(["extract", "emoji", "--device", "cpu"]) == 0
    assert main(["extract", "emoji", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = ("effnet", "minilm", "words", "graph", "tfidf")
    assert [line.split()[:2] for line in out if line.split()[0] in names and "knows" not in line] == [
        *([name, "extracted"] for name in names), *([name, "cached"] for name in names)]
    assert sum(line.startswith("glove   knows") for line in out) == 2  # the text coverage, after each run
    minilm = extract(small, "minilm", ExtractOptions()).features
    assert minilm.array("sentence").shape == (48, 384)
    np.testing.assert_allclose(np.linalg.norm(minilm.array("sentence"), axis=1), 1.0, rtol=1e-5)
