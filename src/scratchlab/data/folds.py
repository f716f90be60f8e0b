"""k-fold cross-validation splits of the training split, as scikit-learn's (Stratified)KFold.

Each fold holds out one k-th of ``splits.train`` as its validation split and trains on the
rest; every sample is held out exactly once. Classification folds are stratified (each class
dealt evenly over the folds). The shuffle is seeded by ``data.split_seed``, like the holdout
splits, so every point of a sweep is scored on the same folds (a paired comparison), whatever
its ``train.seed``. The test split is never part of a fold.
"""

from __future__ import annotations

import numpy as np

from scratchlab.data.splits import Split, Splits
from scratchlab.errors import ConfigError


def kfold_indices(y: np.ndarray, k: int, seed: int, stratify: bool) -> list[np.ndarray]:
    """The k held-out index sets (sorted, disjoint, covering ``range(len(y))``)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    offset = 0
    for idx in groups:
        # one class's samples over the folds, starting where the previous class stopped, so
        # fold sizes differ by at most one even when classes are small
        for j, part in enumerate(np.array_split(rng.permutation(idx), k)):
            folds[(j + offset) % k].append(part)
        offset += len(idx) % k
    return [np.sort(np.concatenate(parts)) for parts in folds]


def fold_splits(splits: Splits, k: int, seed: int) -> list[Splits]:
    """``k`` Splits whose train/val are the folds of ``splits.train`` (test left as it is)."""
    n = len(splits.train)
    if k > n:
        raise ConfigError(f"train.cv_folds={k} exceeds the {n} training samples; "
                          f"expected an integer in [2, {n}]")
    classify = splits.task == "classification"
    held = kfold_indices(splits.train.y if classify else np.zeros(n), k, seed, classify)
    out = []
    for val_idx in held:
        train_idx = np.setdiff1d(np.arange(n), val_idx, assume_unique=True)
        part = splits.train
        out.append(Splits(
            train=Split(part.X[train_idx], part.y[train_idx], part.Y[train_idx]),
            val=Split(part.X[val_idx], part.y[val_idx], part.Y[val_idx]),
            test=splits.test, task=splits.task, class_names=splits.class_names,
            image_shape=splits.image_shape, feature_names=splits.feature_names,
        ))
    return out
