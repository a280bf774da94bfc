"""Rows of several memory-mapped arrays read as one (xmodal.data.stacked): numpy's row indexing,
the files' own dtype, and a digest that follows the files' content, not their place."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.data.stacked import StackedRows
from xmodal.features.kinds import float_rows


def mapped(tmp_path: Path, name: str, array: np.ndarray) -> np.ndarray:
    np.save(tmp_path / name, array)
    return np.load(tmp_path / name, mmap_mode="r")


def two_splits(tmp_path: Path) -> tuple[StackedRows, np.ndarray]:
    first = np.arange(5 * 2 * 3, dtype=np.float16).reshape(5, 2, 3)
    second = -np.arange(4 * 2 * 3, dtype=np.float16).reshape(4, 2, 3)
    keep_first, keep_second = np.array([0, 2, 3, 4]), np.array([1, 3])
    stacked = StackedRows([(mapped(tmp_path, "a.npy", first), keep_first),
                           (mapped(tmp_path, "b.npy", second), keep_second)])
    return stacked, np.concatenate([first[keep_first], second[keep_second]])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=12))
def test_rows_read_as_numpy_reads_the_kept_rows_stacked(tmp_path_factory, rows):
    stacked, expected = two_splits(tmp_path_factory.mktemp("stacked"))
    index = np.asarray(rows, dtype=np.int64)
    assert stacked[index].dtype == np.float16
    np.testing.assert_array_equal(stacked[index], expected[index])


def test_shape_slices_ints_and_float_rows(tmp_path):
    stacked, expected = two_splits(tmp_path)
    assert (stacked.shape, stacked.ndim, len(stacked), stacked.dtype) == ((6, 2, 3), 3, 6, np.float16)
    np.testing.assert_array_equal(stacked[1:5], expected[1:5])
    np.testing.assert_array_equal(stacked[-1], expected[-1])
    np.testing.assert_array_equal(np.asarray(stacked), expected)
    batch = float_rows(stacked, np.array([5, 0]))
    assert batch.dtype.is_floating_point and batch.dtype.itemsize == 4
    np.testing.assert_array_equal(batch.numpy(), expected[[5, 0]].astype(np.float32))
    with pytest.raises(TypeError, match="indexed by rows only"):
        stacked[0, 1]


def test_digest_follows_content_and_kept_rows_not_the_files_place(tmp_path):
    stacked, _ = two_splits(tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("a.npy", "b.npy"):
        shutil.copy(tmp_path / name, moved / name)
    copy = StackedRows([(np.load(moved / "a.npy", mmap_mode="r"), np.array([0, 2, 3, 4])),
                        (np.load(moved / "b.npy", mmap_mode="r"), np.array([1, 3]))])
    assert copy.digest() == stacked.digest()
    fewer = StackedRows([(np.load(moved / "a.npy", mmap_mode="r"), np.array([0, 2, 3])),
                         (np.load(moved / "b.npy", mmap_mode="r"), np.array([1, 3]))])
    assert fewer.digest() != stacked.digest()
    changed = np.load(moved / "b.npy")
    changed[3, 0, 0] = 7
    np.save(moved / "b.npy", changed)
    edited = StackedRows([(np.load(moved / "a.npy", mmap_mode="r"), np.array([0, 2, 3, 4])),
                          (np.load(moved / "b.npy", mmap_mode="r"), np.array([1, 3]))])
    assert edited.digest() != stacked.digest()


def test_the_finite_check_reads_a_memory_map_from_its_file_row_for_row(tmp_path):
    from xmodal.data.precomputed import _nonfinite_rows, _row_block

    values = np.arange(7 * 3 * 2, dtype=np.float16).reshape(7, 3, 2)
    values[5, 1, 0] = np.nan
    mapped_values = mapped(tmp_path, "v.npy", values)
    np.testing.assert_array_equal(_row_block(mapped_values, 2, 6), values[2:6])
    np.testing.assert_array_equal(_row_block(mapped_values, 6, 10), values[6:])
    assert _nonfinite_rows(mapped_values).tolist() == [False] * 5 + [True, False]
