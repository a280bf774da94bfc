import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import subset
from xmodal.cli import main
from xmodal.data.records import Dataset, Item
from xmodal.errors import DataError
from xmodal.features.extract import ExtractOptions, extract, extractor_settings
from xmodal.features.store import feature_dir, open_cached


def toy_dataset(root: Path, n: int = 4) -> Dataset:
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = root / f"{i}.png"
        if not path.exists():  # keep mtimes, so the dataset fingerprint stays the same
            Image.new("RGB", (32, 32), (60 * i, 255 - 60 * i, 0)).save(path)
        texts = (f"colour number {i}", f"a swatch {i}")
        items.append(Item(str(i), path, texts, (i % 2,), "train" if i < 3 else "test"))
    return Dataset("toy", items, label_names=["even", "odd"], source=str(root))


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


def test_changing_settings_or_data_changes_the_key(tmp_path):
    dataset = toy_dataset(tmp_path / "imgs")
    at_224 = feature_dir(dataset, "effnet", extractor_settings("effnet", ExtractOptions(image_resolution=224)))
    at_448 = feature_dir(dataset, "effnet", extractor_settings("effnet", ExtractOptions(image_resolution=448)))
    assert at_224 != at_448
    Image.new("RGB", (40, 40)).save(dataset.items[0].image)
    assert feature_dir(dataset, "effnet", extractor_settings("effnet", ExtractOptions())) != at_224


@pytest.mark.slow
def test_effnet_features_match_the_encoder_and_skip_bad(tmp_path):
    from xmodal.data.images import load_rgb
    from xmodal.encoders.image import EfficientNetLite0

    dataset = toy_dataset(tmp_path / "imgs")
    features = extract(dataset, "effnet", ExtractOptions(batch_size=3)).features
    assert features.array("grid").shape == (4, 49, 1280) and features.array("grid").dtype == np.float16
    direct = EfficientNetLite0(224).encode([load_rgb(dataset.items[3].image)]).pooled[0].numpy()
    np.testing.assert_allclose(features.array("pooled")[3], direct, rtol=1e-4, atol=1e-4)

    dataset.items[1].image.write_bytes(dataset.items[1].image.read_bytes()[:60])  # truncate
    with pytest.raises(DataError, match=r"1\.png: unreadable or truncated image"):
        extract(dataset, "effnet", ExtractOptions())
    skipped = extract(dataset, "effnet", ExtractOptions(skip_bad=True)).features
    assert skipped.bad_items == ["1"] and not skipped.array("pooled")[1].any() and skipped.array("pooled")[2].any()


def test_killed_extraction_leaves_nothing_complete(tmp_path):
    """SIGKILL in the middle of writing: no manifest, nothing at the final path; the rerun recovers."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_feature_store import toy_dataset
        import xmodal.features.extract as ex
        real = ex._fill_words
        def dying(dataset, writer):
            real(dataset, writer)  # every array written...
            os.kill(os.getpid(), signal.SIGKILL)  # ...then killed before the manifest
        ex._fill_words = dying
        ex.extract(toy_dataset(Path({str(tmp_path / 'imgs')!r})), "words", ex.ExtractOptions())
    """)
    env = {**os.environ, "XMODAL_HOME": str(tmp_path / "home")}
    toy_dataset(tmp_path / "imgs")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    dataset = toy_dataset(tmp_path / "imgs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XMODAL_HOME", str(tmp_path / "home"))
        final = feature_dir(dataset, "words", extractor_settings("words", ExtractOptions()))
        leftovers = list(final.parent.glob(f"{final.name}.tmp-*"))
        assert len(leftovers) == 1 and (leftovers[0] / "ids.npy").exists()
        assert not final.exists() and open_cached(final) is None
        rerun = extract(dataset, "words", ExtractOptions())
        assert not rerun.cached and (final / "manifest.json").exists()
        assert not list(final.parent.glob(f"{final.name}.tmp-*"))


def test_feature_datasets_are_not_re_encoded(wikipedia_dir):
    from xmodal.data.wikipedia import read_wikipedia_features
    from xmodal.errors import XmodalError

    with pytest.raises(XmodalError, match="ships image features"):
        extract(read_wikipedia_features(wikipedia_dir), "effnet", ExtractOptions())


@pytest.mark.slow
def test_cli_extract_on_real_emoji_subset(emoji_dataset, monkeypatch, capsys):
    """`xmodal extract` end to end on 8 real emojis per split; the second run is a cache hit."""
    small = subset(emoji_dataset, 8)
    monkeypatch.setattr("xmodal.data.registry.load_dataset", lambda *a, **k: small)
    assert main(["extract", "emoji", "--device", "cpu"]) == 0
    assert main(["extract", "emoji", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["effnet", "extracted"], ["minilm", "extracted"],
                                                  ["words", "extracted"], ["effnet", "cached"],
                                                  ["minilm", "cached"], ["words", "cached"]]
    minilm = extract(small, "minilm", ExtractOptions()).features
    assert minilm.array("sentence").shape == (48, 384)
    np.testing.assert_allclose(np.linalg.norm(minilm.array("sentence"), axis=1), 1.0, rtol=1e-5)
