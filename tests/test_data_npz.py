"""Deterministic, atomic .npz writing."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

from scratchlab.core.files import write_npz_atomic


def test_round_trip_and_reproducible_bytes(tmp_path: Path) -> None:
    arrays = {
        "images": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "y": np.array([1.5, np.nan]),
    }
    write_npz_atomic(tmp_path / "a.npz", **arrays)
    write_npz_atomic(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    # np.savez would stamp the current time here; a fixed stamp keeps bytes stable across runs.
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(tmp_path / "a.npz") as back:
        assert list(back) == ["images", "y"]
        np.testing.assert_array_equal(back["images"], arrays["images"])
        assert back["images"].dtype == np.uint8
        np.testing.assert_array_equal(back["y"], arrays["y"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]


def test_object_arrays_are_refused_without_leftovers(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_npz_atomic(tmp_path / "a.npz", x=np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []
