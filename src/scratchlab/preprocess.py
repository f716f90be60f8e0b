"""Turn a raw dataset into the train/validation/test arrays the network consumes.

Scales to [0, 1] float32, flattens images, one-hot encodes labels and makes a seeded,
stratified split. The split is seeded by ``data.split_seed`` (not ``train.seed``) so runs with
different training seeds are compared on the same held-out samples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scratchlab.data.datasets import RawDataset
from scratchlab.data.npz import save_npz_deterministic
from scratchlab.errors import DataError
from scratchlab.io import write_json_atomic

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split: inputs ``X`` (n, d) float32, labels/targets ``y`` and network targets ``Y``."""

    X: np.ndarray
    y: np.ndarray
    Y: np.ndarray

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class Splits:
    """The three splits plus what evaluation and plotting need to know about them."""

    train: Split
    val: Split
    test: Split
    task: str
    class_names: list[str] = field(default_factory=list)
    image_shape: tuple[int, int] | None = None
    feature_names: list[str] = field(default_factory=list)

    @property
    def input_dim(self) -> int:
        return self.train.X.shape[1]

    @property
    def output_dim(self) -> int:
        return self.train.Y.shape[1]


def stratified_holdout(
    y: np.ndarray, fraction: float, rng: np.random.Generator, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, holdout) with ``fraction`` of every class held out (at least one each)."""
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    keep, hold = [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_hold = int(round(fraction * len(idx)))
        if len(idx) > 1:
            n_hold = min(max(n_hold, 1), len(idx) - 1)
        hold.append(idx[:n_hold])
        keep.append(idx[n_hold:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(hold))


def _scale(raw: RawDataset, X: np.ndarray, X_fit: np.ndarray) -> np.ndarray:
    """Map inputs to [0, 1]: known pixel range, else min-max fitted on the training split."""
    X = X.reshape(len(X), -1).astype(np.float64)
    if raw.pixel_range is not None:
        lo, hi = raw.pixel_range
    elif raw.image_shape is not None:  # images: one range for all pixels keeps the picture
        lo, hi = float(X_fit.min()), float(X_fit.max())
    else:  # tables: per feature
        lo, hi = X_fit.min(axis=0), X_fit.max(axis=0)
    span = np.where(np.asarray(hi - lo) > 0, hi - lo, 1.0)
    return np.clip((X - lo) / span, 0.0, 1.0).astype(np.float32)


def preprocess(raw: RawDataset, data_cfg: Mapping[str, Any], val_fraction: float) -> Splits:
    """Split, scale, flatten and encode ``raw`` (a pure function of its inputs)."""
    rng = np.random.default_rng(int(data_cfg["split_seed"]))
    classify = raw.task == "classification"
    X, y = raw.X, raw.y
    if raw.X_test is not None and data_cfg.get("test_fraction") is None:
        X_test, y_test = raw.X_test, raw.y_test
    else:
        keep, hold = stratified_holdout(y, float(data_cfg["test_fraction"]), rng, classify)
        X, y, X_test, y_test = X[keep], y[keep], X[hold], y[hold]
    keep, hold = stratified_holdout(y, val_fraction, rng, classify)
    parts = {"train": (X[keep], y[keep]), "val": (X[hold], y[hold]), "test": (X_test, y_test)}
    for name, (Xp, _) in parts.items():
        if len(Xp) == 0:
            raise DataError(f"data.{raw.name}: the {name} split is empty; the dataset is too small")
    X_fit = parts["train"][0].reshape(len(parts["train"][0]), -1)
    n_classes = len(raw.class_names)
    splits = {}
    for name, (Xp, yp) in parts.items():
        Xs = _scale(raw, Xp, X_fit)
        if classify:
            yp = yp.astype(np.int64)
            Y = np.eye(n_classes, dtype=np.float32)[yp]
        else:
            yp = yp.astype(np.float32).reshape(len(yp), -1)
            Y = yp
        splits[name] = Split(Xs, yp, Y)
    return Splits(
        **splits,
        task=raw.task,
        class_names=list(raw.class_names),
        image_shape=raw.image_shape,
        feature_names=list(raw.feature_names),
    )


def stats(splits: Splits) -> dict[str, Any]:
    """Small summary of the splits, written next to them (and shown by ``dvc metrics``)."""
    out: dict[str, Any] = {
        "task": splits.task,
        "input_dim": splits.input_dim,
        "output_dim": splits.output_dim,
        "class_names": splits.class_names,
        "image_shape": list(splits.image_shape) if splits.image_shape else None,
        "feature_names": splits.feature_names,
    }
    for name in SPLITS:
        part: Split = getattr(splits, name)
        entry: dict[str, Any] = {"n": len(part), "x_min": float(part.X.min()),
                                 "x_max": float(part.X.max())}
        if splits.task == "classification":
            entry["class_counts"] = np.bincount(part.y, minlength=splits.output_dim).tolist()
        out[name] = entry
    return out


def save_splits(splits: Splits, out_dir: Path) -> None:
    """Write ``{train,val,test}.npz`` and ``stats.json`` byte-for-byte reproducibly."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        part: Split = getattr(splits, name)
        save_npz_deterministic(out_dir / f"{name}.npz", X=part.X, y=part.y, Y=part.Y)
    write_json_atomic(out_dir / "stats.json", stats(splits))


def load_splits(in_dir: Path) -> Splits:
    """Read what :func:`save_splits` wrote."""
    meta_path = in_dir / "stats.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: not found (run the preprocess stage first: dvc repro)")
    meta = json.loads(meta_path.read_text())
    parts = {}
    for name in SPLITS:
        path = in_dir / f"{name}.npz"
        try:
            with np.load(path) as npz:
                parts[name] = Split(npz["X"], npz["y"], npz["Y"])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: unreadable split ({exc})") from exc
    shape = meta.get("image_shape")
    return Splits(
        **parts,
        task=meta["task"],
        class_names=meta["class_names"],
        image_shape=tuple(shape) if shape else None,
        feature_names=meta.get("feature_names", []),
    )
