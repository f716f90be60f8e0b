"""Scaling, flattening, one-hot encoding and the seeded stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scratchlab.data.base import RawDataset
from scratchlab.data.preprocess import preprocess, stratified_holdout
from scratchlab.spec.splits import load_splits, save_splits


def _raw(n: int = 300, classes: int = 3, test: bool = False) -> RawDataset:
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
    y = np.arange(n) % classes
    return RawDataset(
        name="toy", task="classification", X=X, y=y,
        X_test=X[:30] if test else None, y_test=y[:30] if test else None,
        class_names=[str(c) for c in range(classes)], image_shape=(4, 4),
        pixel_range=(0.0, 255.0), feature_names=[],
    )


SPLIT = {"test_fraction": 0.2, "split_seed": 0, "val_fraction": 0.1}


def test_split_sizes_are_stratified_and_disjoint() -> None:
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    keep, hold = stratified_holdout(y, 0.2, np.random.default_rng(0), stratify=True)
    assert not set(keep) & set(hold) and len(keep) + len(hold) == len(y)
    assert np.bincount(y[hold]).tolist() == [10, 6, 3, 1]


def test_preprocess_scales_flattens_and_one_hot_encodes() -> None:
    raw = _raw()
    splits = preprocess(raw, **SPLIT)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (216, 24, 60)
    pixels = {tuple(row) for row in (raw.X.reshape(len(raw.X), 16) / 255.0).astype(np.float32)}
    for part in (splits.train, splits.val, splits.test):
        assert part.X.dtype == np.float32 and part.X.shape[1] == 16
        assert {tuple(row) for row in part.X} <= pixels  # each row is a raw image / 255
        assert np.array_equal(part.Y.argmax(axis=1), part.y) and part.Y.sum() == len(part.y)
    assert splits.input_dim == 16 and splits.output_dim == 3


def test_official_test_split_is_kept() -> None:
    splits = preprocess(_raw(test=True), **{**SPLIT, "test_fraction": None})
    assert len(splits.test) == 30 and len(splits.train) + len(splits.val) == 300


def test_same_seed_same_split_bytes(tmp_path: Path) -> None:
    save_splits(preprocess(_raw(), **SPLIT), tmp_path / "a")
    save_splits(preprocess(_raw(), **SPLIT), tmp_path / "b")
    for name in ("train.npz", "val.npz", "test.npz", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = preprocess(_raw(), **{**SPLIT, "split_seed": 1})
    assert not np.array_equal(other.test.X, load_splits(tmp_path / "a").test.X)


def test_tables_are_min_max_scaled_per_feature() -> None:
    X = np.column_stack([np.linspace(0, 1000, 100), np.linspace(-1, 1, 100)])
    raw = RawDataset(
        name="table", task="regression", X=X, y=X[:, 0] * 2.0, X_test=None, y_test=None,
        class_names=[], image_shape=None, pixel_range=None, feature_names=["a", "b"],
    )
    splits = preprocess(raw, **SPLIT)
    assert splits.train.X.min(axis=0).tolist() == [0.0, 0.0]
    assert splits.train.X.max(axis=0).tolist() == [1.0, 1.0]
    assert splits.train.Y.shape == (len(splits.train), 1)


def test_too_small_dataset_is_a_clear_error() -> None:
    from scratchlab.core.errors import DataError

    with pytest.raises(DataError, match="split is empty"):
        preprocess(_raw(n=2, classes=2), **SPLIT)
