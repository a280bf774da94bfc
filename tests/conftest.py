"""Shared fixtures: a private XMODAL_HOME, and the real data in ../shared when it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EMOJI_TARBALLS = SHARED_DATA / "emoji"
WIKIPEDIA = SHARED_DATA / "wikipedia"


@pytest.fixture(scope="session", autouse=True)
def xmodal_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test writes its caches under one temporary home, never the user's."""
    home = tmp_path_factory.mktemp("xmodal-home")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("XMODAL_HOME", str(home))
    yield home
    patcher.undo()


@pytest.fixture(scope="session")
def emoji_dataset(xmodal_home):
    if not (EMOJI_TARBALLS / "emojilib-4.0.3.tgz").is_file():
        pytest.skip("../shared/data/emoji is absent")
    from xmodal.data.emoji import read_emoji

    return read_emoji(EMOJI_TARBALLS)


@pytest.fixture(scope="session")
def wikipedia_dir() -> Path:
    if not (WIKIPEDIA / "raw_features.mat").is_file():
        pytest.skip("../shared/data/wikipedia is absent")
    return WIKIPEDIA


def subset(dataset, n: int, name: str | None = None):
    """The first ``n`` items of each split, as a dataset of its own (fast encoder tests)."""
    from dataclasses import replace

    items = [item for split in ("train", "val", "test") for item in dataset.split(split)[:n]]
    return replace(dataset, name=name or f"{dataset.name}-subset{n}", items=items)
