"""k-fold cross-validation of a config, and the refit of a sweep's best point.

With ``train.cv_folds=k`` a job scores its config the way ``GridSearchCV`` does: the training
data (train and validation splits together; the test split is never touched) is cut into k
folds, stratified and seeded by ``data.split_seed``; each fold is held out once while the
network trains on the rest. The job's score is the mean held-out loss (``val_loss``) with its
standard deviation (``val_loss_std``); each fold's score is a metric series (step = fold).
When the sweep ends, :func:`refit` trains the best point once on all the training data and
evaluates it once on the test split, as ``GridSearchCV(refit=True)`` does.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

import numpy as np

from scratchlab.config import Config
from scratchlab.pipeline.training import train
from scratchlab.spec.splits import Split, Splits


@dataclass
class CrossValidation:
    """Per-fold final held-out scores (``val_loss``, and ``val_accuracy`` for classifiers),
    and the folds (numbered from 1) whose training diverged."""

    folds: dict[str, list[float]]
    diverged: list[int]

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of each score: the job's metrics."""
        out = {}
        for key, values in self.folds.items():
            out[key] = statistics.fmean(values)
            out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        return out


def _concat(a: Split, b: Split) -> Split:
    return Split(*(np.concatenate([x, y]) for x, y in zip(a, b, strict=True)))


def _take(split: Split, index: np.ndarray) -> Split:
    return Split(*(array[index] for array in split))


def training_data(splits: Splits) -> Split:
    """Everything but the test split."""
    return _concat(splits.train, splits.val)


def fold_indices(y: np.ndarray, k: int, seed: int, stratify: bool) -> list[np.ndarray]:
    """k disjoint held-out index sets covering every row once; each class dealt round-robin
    after a seeded shuffle, so every fold holds about 1/k of every class."""
    rng = np.random.default_rng(seed)
    labels = y if stratify else np.zeros(len(y), dtype=np.int64)
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        for i in range(k):
            folds[(i + offset) % k].append(members[i::k])
        offset += len(members)
    return [np.sort(np.concatenate(parts)) for parts in folds]


def fold_splits(splits: Splits, k: int, seed: int) -> list[Splits]:
    """The k (train = the other folds, val = this fold) splits; the test split stays aside."""
    data = training_data(splits)
    held_out = fold_indices(data.y, k, seed, stratify=splits.task == "classification")
    everything = np.arange(len(data))
    return [replace(splits, train=_take(data, np.setdiff1d(everything, fold)),
                    val=_take(data, fold)) for fold in held_out]


def cross_validate(config: Config, splits: Splits) -> CrossValidation:
    """Train the config once per fold; the final held-out scores of each."""
    scores: dict[str, list[float]] = {}
    diverged = []
    for number, fold in enumerate(
            fold_splits(splits, config.train.cv_folds, config.data.split_seed), start=1):
        trained = train(config, fold)
        diverged += [number] if trained.history.diverged else []
        for key in ("val_loss", "val_accuracy"):
            if key in trained.history.history:
                scores.setdefault(key, []).append(float(trained.history.history[key][-1]))
    return CrossValidation(scores, diverged)


def refit_splits(splits: Splits) -> Splits:
    """All the training data to train on, no validation split, the test split as it is."""
    data = training_data(splits)
    return replace(splits, train=data, val=_take(data, np.arange(0)))


def refit_config(config: Config) -> Config:
    """The config trained once, without folds; early stopping needs a validation split, which
    the refit no longer has, so it trains for ``train.epochs``."""
    train = replace(config.train, cv_folds=0,
                    early_stopping=replace(config.train.early_stopping, enabled=False))
    plain = {**config.plain, "train": {**config.plain["train"], "cv_folds": 0}}
    plain["train"]["early_stopping"] = {**plain["train"]["early_stopping"], "enabled": False}
    return replace(config, train=train, plain=plain)
