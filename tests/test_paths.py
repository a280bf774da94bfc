import os
import stat
from pathlib import Path

import pytest

from xmodal.paths import atomic_directory, atomic_write_bytes, current_umask, default_file_mode


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask and current_umask() == umask
    assert default_file_mode() == 0o666 & ~umask


def test_atomic_writes_get_the_mode_open_would_give(umask, tmp_path):
    """Checkpoints, config.yaml, vocabulary.json, report.html: not mkstemp's private 0o600."""
    atomic_write_bytes(tmp_path / "config.yaml", b"a: 1\n")
    with open(tmp_path / "plain.txt", "w") as stream:
        stream.write("x")
    assert mode(tmp_path / "config.yaml") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    atomic_write_bytes(tmp_path / "config.yaml", b"a: 2\n")  # replacing keeps it
    assert mode(tmp_path / "config.yaml") == 0o666 & ~umask
    with atomic_directory(tmp_path / "folder") as staging:
        (staging / "inside.txt").write_text("x")
    assert mode(tmp_path / "folder") == 0o777 & ~umask
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_feature_cache_files_follow_the_umask(umask, tmp_path, monkeypatch):
    from test_feature_store import FakeEffnet, FakeMiniLM, toy_dataset
    from xmodal.features.extract import ExtractOptions, extract

    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("xmodal.encoders.image.EfficientNetLite0", FakeEffnet)
    monkeypatch.setattr("xmodal.encoders.minilm.MiniLM", FakeMiniLM)
    dataset = toy_dataset(tmp_path / "imgs")
    for name in ("effnet", "minilm", "words"):
        extract(dataset, name, ExtractOptions())
    written = list((tmp_path / "home").rglob("*"))
    assert any(p.name == "vocabulary.json" for p in written) and any(p.name == "settings.json" for p in written)
    for path in written:
        assert mode(path) == (0o777 if path.is_dir() else 0o666) & ~umask, path
