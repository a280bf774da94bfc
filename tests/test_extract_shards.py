"""Image extraction split over processes (issue 34, step 4): ``xmodal extract --shard i/n``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from test_feature_store import (  # noqa: F401  (home: the fixture with a private home and fake encoders)
    TESTS,
    FakeEffnet,
    expected_pooled,
    home,
    shards,
    toy_dataset,
    views,
)
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.features.extract import ExtractOptions, extract, extract_shard
from xmodal.features.shards import Shard
from xmodal.file_hashes import file_keys


def test_shards_parse_and_split_the_keys_between_them():
    assert Shard.parse("1/3") == Shard(1, 3) and str(Shard(1, 3)) == "1/3"
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(XmodalError, match="--shard"):
            Shard.parse(bad)
    keys = [f"key-{i}" for i in range(300)]
    owners = [[shard.index for shard in (Shard(0, 3), Shard(1, 3), Shard(2, 3)) if shard.owns(key)] for key in keys]
    assert all(len(owner) == 1 for owner in owners)  # every key falls to exactly one shard
    counts = np.bincount([owner[0] for owner in owners])
    assert counts.min() > 70  # and the split is about even


def test_torchrun_s_rank_and_world_size_give_the_shard(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Shard.from_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert Shard.from_environment() == Shard(1, 2)


def test_the_last_shard_builds_the_view_the_whole_extraction_would(home, tmp_path):  # noqa: F811
    dataset = toy_dataset(tmp_path / "imgs", 12)
    dataset.items[5].image.write_bytes(dataset.items[5].image.read_bytes()[:60])  # truncated: skipped and listed
    options = ExtractOptions(chunk_images=2, skip_bad=True)
    first = extract_shard(dataset, "effnet", options, Shard(0, 2))
    assert first.view is None and first.waiting == [1] and views(home, "toy", "effnet") == []
    second = extract_shard(dataset, "effnet", options, Shard(1, 2))
    assert second.view is not None and second.waiting == []
    assert first.encoded + second.encoded == 11 == FakeEffnet.images  # each readable image once
    features = second.view.features
    assert features.bad_items == ["5"] and features.manifest["encoded"] == 11
    readable = [item.image for item in dataset.items if item.id != "5"]
    assert not features.array("pooled")[5].any()
    np.testing.assert_allclose(np.delete(features.array("pooled"), 5, axis=0), expected_pooled(readable), atol=1e-3)
    assert not (features.path.parent / f".shards-{features.path.name}").exists()  # markers removed
    again = extract(dataset, "effnet", options)
    assert again.cached and again.features.path == features.path and FakeEffnet.images == 11
    assert extract_shard(dataset, "words", options, Shard(1, 2)).left_to_shard_0
    assert extract_shard(dataset, "words", options, Shard(0, 2)).view is not None


def _shard_script(images: Path, shard: str, die_after_chunks: int | None = None) -> str:
    return textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from test_feature_store import FakeEffnet, install_fakes, toy_dataset
        import xmodal.features.extract as ex
        from xmodal.features.shards import Shard
        install_fakes()
        real = FakeEffnet.encode
        def encode(self, images):
            if {die_after_chunks!r} is not None and FakeEffnet.calls == {die_after_chunks!r}:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, images)
        FakeEffnet.encode = encode
        outcome = ex.extract_shard(toy_dataset(Path({str(images)!r}), 16), "effnet",
                                   ex.ExtractOptions(chunk_images=2), Shard.parse({shard!r}))
        print(outcome.encoded, outcome.view is not None)
    """)


def test_two_processes_at_once_and_a_killed_shard_resumes(home, tmp_path):  # noqa: F811
    images = tmp_path / "imgs"
    dataset = toy_dataset(images, 16)
    mine = [Shard(1, 2).owns(key) for key in file_keys([item.image for item in dataset.items])]
    env = {**os.environ, "XMODAL_HOME": str(home)}
    killed = subprocess.run([sys.executable, "-c", _shard_script(images, "1/2", die_after_chunks=2)], env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(shards(home, "effnet")) == 2  # two chunks of shard 1 committed before the kill
    both = [subprocess.Popen([sys.executable, "-c", _shard_script(images, shard)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for shard in ("0/2", "1/2")]
    outputs = [process.communicate(timeout=300) for process in both]
    assert all(process.returncode == 0 for process in both), [err for _, err in outputs]
    encoded = [int(out.split()[0]) for out, _ in outputs]
    assert encoded == [mine.count(False), mine.count(True) - 4]  # shard 1 resumed after its 4 committed images
    assert sum(out.split()[1] == "True" for out, _ in outputs) >= 1  # whichever finished last built the view
    view = extract(toy_dataset(images, 16), "effnet", ExtractOptions())
    assert view.cached and FakeEffnet.images == 0
    np.testing.assert_allclose(view.features.array("pooled"), expected_pooled([i.image for i in dataset.items]),
                               atol=1e-3)


def test_cli_runs_a_shard_and_says_what_is_left(home, tmp_path, capsys):  # noqa: F811
    images = tmp_path / "imgs"
    toy_dataset(images, 6)
    listing = tmp_path / "items.csv"
    listing.write_text("image,caption,split\n" + "".join(f"{i}.png,colour {i},train\n" for i in range(6)))
    argv = ["extract", "csv", "--path", str(listing), "--image-root", str(images), "--encoders", "effnet,minilm"]
    assert main([*argv, "--shard", "1/2"]) == 0
    out = capsys.readouterr().out
    assert "effnet  shard 1/2: encoded" in out and "waiting for shard(s) 0" in out
    assert "minilm  shard 1/2: not an image extractor, left to shard 0" in out
    assert main([*argv, "--shard", "0/2"]) == 0
    assert "view built" in capsys.readouterr().out
    assert main([*argv, "--shard", "2/2"]) == 2
    assert "--shard 2/2: i must lie in 0..n-1" in capsys.readouterr().err
    assert main([*argv, "--shard", "0/2", "--force"]) == 2
    assert "--force re-encodes every image in one process" in capsys.readouterr().err
