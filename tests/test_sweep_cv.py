"""Cross-validated sweeps (``train.cv_folds=k``), as GridSearchCV(refit=True): folds, fold
scores and their mean/std per point, error-bar data in the comparison, the best point (lowest
mean fold val_loss) refit on the whole training split and tested once."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from conftest import REPO, project_env
from scratchlab.api import config
from scratchlab.cv import mean_curves
from scratchlab.data.folds import fold_splits, kfold_indices
from scratchlab.data.splits import Split, Splits
from scratchlab.errors import ConfigError
from scratchlab.nn.callbacks import History


def test_folds_partition_the_training_split_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(4), [13, 7, 22, 3])  # uneven classes, one smaller than k
    folds = kfold_indices(y, 5, seed=0, stratify=True)
    together = np.concatenate(folds)
    assert sorted(together.tolist()) == list(range(len(y)))  # each sample held out once
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for c in range(4):
        per_fold = [int(np.sum(y[f] == c)) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)
    again = kfold_indices(y, 5, seed=0, stratify=True)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    other = kfold_indices(y, 5, seed=1, stratify=True)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other, strict=True))


def _splits(n: int = 30) -> Splits:
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n) % 3
    Y = np.eye(3, dtype=np.float32)[y]
    part = Split(X, y, Y)
    test = Split(X[:3], y[:3], Y[:3])
    return Splits(part, part, test, task="classification", class_names=["a", "b", "c"])


def test_each_fold_trains_on_the_rest_and_keeps_the_test_split() -> None:
    splits = _splits()
    for fold in fold_splits(splits, 3, seed=0):
        assert len(fold.train) == 20 and len(fold.val) == 10
        assert not set(fold.train.X[:, 0]) & set(fold.val.X[:, 0])
        assert fold.test is splits.test
    with pytest.raises(ConfigError, match="train.cv_folds=31 exceeds the 30 training samples"):
        fold_splits(splits, 31, seed=0)


def test_cv_folds_is_null_or_at_least_two() -> None:
    assert config().train.cv_folds is None
    assert config("train.cv_folds=5").train.cv_folds == 5
    with pytest.raises(ConfigError, match=r"train.cv_folds=1 is out of range"):
        config("train.cv_folds=1")


def test_curves_average_the_folds_that_trained_each_epoch() -> None:
    short = History({"loss": [4.0], "val_loss": [2.0]}, epochs_run=1)
    long = History({"loss": [2.0, 1.0], "val_loss": [1.0, 0.5]}, epochs_run=2)
    assert mean_curves([short, long]) == [{"loss": 3.0, "val_loss": 1.5},
                                           {"loss": 1.0, "val_loss": 0.5}]


@pytest.mark.slow
def test_a_cross_validated_sweep_scores_folds_and_refits_the_best(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "scratchlab.train", "-m", "optimizer.lr=0.03,0.3,3",
         "train.cv_folds=3", "train.epochs=3", "train.progress=false",
         "tracking.log_model=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=project_env(REPO, uri), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parent = next(r for r in runs if r.data.tags.get("sweep_role") == "parent")
    kids = [r for r in runs if r.data.tags.get("sweep_role") == "child"]
    refits = [r for r in runs if r.data.tags.get("refit") == "true"]
    assert len(kids) == 3 and len(refits) == 1
    for kid in kids:
        folds = client.get_metric_history(kid.info.run_id, "cv_val_loss")
        scores = [m.value for m in sorted(folds, key=lambda m: m.step)]
        assert sorted(m.step for m in folds) == [1, 2, 3]
        metrics = kid.data.metrics
        assert metrics["cv_val_loss_mean"] == pytest.approx(np.mean(scores), rel=1e-12)
        assert metrics["cv_val_loss_std"] == pytest.approx(np.std(scores), rel=1e-12)
        assert "cv_val_accuracy_std" in metrics
        assert not any(k.startswith("test_") for k in metrics)  # the test split is untouched
    best = min(kids, key=lambda r: r.data.metrics["cv_val_loss_mean"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    refit = refits[0]
    assert refit.data.tags["refit_of"] == best.info.run_id
    assert refit.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["refit_run_id"] == refit.info.run_id
    assert "test_accuracy" in refit.data.metrics and "cv_folds" not in refit.data.tags
    assert parent.data.metrics["refit_test_accuracy"] == refit.data.metrics["test_accuracy"]
    with open(tmp_path / "sweep" / "comparison" / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3  # the refit is not a point of the comparison
    by_id = {r["run_id"]: r for r in rows}
    for kid in kids:
        row = by_id[kid.info.run_id]
        assert float(row["cv_val_loss_mean"]) == kid.data.metrics["cv_val_loss_mean"]
        assert float(row["cv_val_loss_std"]) == kid.data.metrics["cv_val_loss_std"]
