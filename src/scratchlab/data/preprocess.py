"""Turn a raw dataset into the train/validation/test arrays the network consumes.

Scales to [0, 1] float32, flattens images, one-hot encodes labels and makes a seeded,
stratified split. The split is seeded by ``data.split_seed`` (not ``train.seed``) so runs with
different training seeds are compared on the same held-out samples.
"""

from __future__ import annotations

import logging

import numpy as np

from scratchlab.core.errors import DataError
from scratchlab.data.base import RawDataset
from scratchlab.spec.splits import Split, Splits

logger = logging.getLogger(__name__)


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


CHUNK_ROWS = 4096  # rows scaled at a time: float64 work space stays small (60k x 784 = 376 MB)


def _scale(raw: RawDataset, X: np.ndarray, X_fit: np.ndarray) -> np.ndarray:
    """Map inputs to [0, 1] float32: known pixel range, else min-max fitted on the training
    split. Computed in float64 a chunk of rows at a time (the same values, a fraction of the
    memory: the peak is the float32 result, not a float64 copy of the whole split)."""
    X = X.reshape(len(X), -1)
    if raw.pixel_range is not None:
        lo, hi = raw.pixel_range
    elif raw.image_shape is not None:  # images: one range for all pixels keeps the picture
        lo, hi = float(X_fit.min()), float(X_fit.max())
    else:  # tables: per feature
        lo, hi = X_fit.min(axis=0), X_fit.max(axis=0)
    span = np.where(np.asarray(hi - lo) > 0, hi - lo, 1.0)
    out = np.empty(X.shape, dtype=np.float32)
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X[start : start + CHUNK_ROWS].astype(np.float64)
        out[start : start + CHUNK_ROWS] = np.clip((chunk - lo) / span, 0.0, 1.0)
    return out


def warn_missing_classes(raw: RawDataset, labels: dict[str, np.ndarray]) -> None:
    """A class with fewer rows than the splits need (one in each) is missing from some: say
    which, naming the class, since its scores cannot be measured where it has no rows."""
    counts = {name: np.bincount(y.astype(np.int64), minlength=len(raw.class_names))
              for name, y in labels.items()}
    total = sum(counts.values())
    for c, class_name in enumerate(raw.class_names):
        missing = [split for name, split in (("train", "training"), ("val", "validation"),
                                             ("test", "test")) if counts[name][c] == 0]
        if missing:
            logger.warning(
                "class %r of dataset %s has %d row%s, fewer than the splits need (one in "
                "each): none in the %s split%s", class_name, raw.name, total[c],
                "" if total[c] == 1 else "s", " and ".join(missing),
                "" if len(missing) == 1 else "s")


def preprocess(
    raw: RawDataset, *, test_fraction: float | None, split_seed: int, val_fraction: float
) -> Splits:
    """Split, scale, flatten and encode ``raw`` (a pure function of its inputs).

    ``test_fraction`` None keeps the dataset's official test split.
    """
    rng = np.random.default_rng(split_seed)
    classify = raw.task == "classification"
    X, y = raw.X, raw.y
    if raw.X_test is not None and test_fraction is None:
        X_test, y_test = raw.X_test, raw.y_test
    else:
        keep, hold = stratified_holdout(y, float(test_fraction), rng, classify)
        X, y, X_test, y_test = X[keep], y[keep], X[hold], y[hold]
    keep, hold = stratified_holdout(y, val_fraction, rng, classify)
    parts = {"train": (X[keep], y[keep]), "val": (X[hold], y[hold]), "test": (X_test, y_test)}
    for name, (Xp, _) in parts.items():
        if len(Xp) == 0:
            raise DataError(f"data.{raw.name}: the {name} split is empty; the dataset is too small")
    if classify:
        warn_missing_classes(raw, {name: y for name, (_, y) in parts.items()})
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
