"""k-fold cross-validated sweeps scored like GridSearchCV, with the best point refit."""

from __future__ import annotations

import csv
import json

import mlflow
import numpy as np
import pytest

from scratchlab.api import config, load_data
from scratchlab.core.errors import ConfigError
from scratchlab.pipeline.crossval import (
    cross_validate,
    fold_indices,
    fold_splits,
    refit_config,
    refit_splits,
)
from test_sweep_support import parent_and_children, sweep


def test_folds_cover_every_row_once_and_keep_the_class_balance() -> None:
    y = np.repeat(np.arange(3), [30, 20, 10])
    folds = fold_indices(y, 5, seed=0, stratify=True)
    assert sorted(np.concatenate(folds).tolist()) == list(range(60))
    for fold in folds:
        assert np.bincount(y[fold], minlength=3).tolist() == [6, 4, 2]
    assert [f.tolist() for f in fold_indices(y, 5, 0, True)] == [f.tolist() for f in folds]


def test_each_fold_trains_on_the_rest_and_the_test_split_is_untouched() -> None:
    cfg = config("train.cv_folds=3", "train.epochs=2", "train.progress=false")
    splits = load_data(cfg)
    folds = fold_splits(splits, 3, seed=0)
    n = len(splits.train) + len(splits.val)
    assert [len(f.train) + len(f.val) for f in folds] == [n] * 3
    assert sum(len(f.val) for f in folds) == n
    assert all(f.test is splits.test for f in folds)
    cv = cross_validate(cfg, splits)
    assert len(cv.folds["val_loss"]) == 3 and cv.diverged == []
    summary = cv.summary()
    assert summary["val_loss"] == pytest.approx(np.mean(cv.folds["val_loss"]))
    assert summary["val_loss_std"] == pytest.approx(np.std(cv.folds["val_loss"], ddof=1))


def test_the_refit_trains_on_all_training_data_without_early_stopping() -> None:
    cfg = config("train.cv_folds=3", "train.early_stopping.enabled=true")
    refit = refit_config(cfg)
    assert refit.train.cv_folds == 0 and not refit.train.early_stopping.enabled
    assert refit.plain["train"]["cv_folds"] == 0
    splits = load_data(cfg)
    whole = refit_splits(splits)
    assert len(whole.train) == len(splits.train) + len(splits.val) and len(whole.val) == 0


def test_one_fold_is_not_a_cross_validation() -> None:
    with pytest.raises(ConfigError, match=r"^train.cv_folds=1 is not a cross-validation"):
        config("train.cv_folds=1")


@pytest.mark.slow
def test_a_cross_validated_grid_sweep_refits_its_best_point(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    sweep_dir = sweep(tmp_path, uri, "optimizer=sgd,momentum", "optimizer.lr=0.05,0.5",
                      "train.cv_folds=3")
    parent, kids = parent_and_children(uri)
    points = [k for k in kids if k.data.tags["sweep_role"] == "child"]
    (refit,) = [k for k in kids if k.data.tags["sweep_role"] == "refit"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    for point in points:
        folds = client.get_metric_history(point.info.run_id, "cv_val_loss")
        assert sorted(m.step for m in folds) == [1, 2, 3]
        assert point.data.metrics["val_loss"] == pytest.approx(np.mean([m.value for m in folds]))
        assert "val_loss_std" in point.data.metrics and "test_accuracy" not in point.data.metrics
    best = min(points, key=lambda p: p.data.metrics["val_loss"])
    assert refit.data.tags["refit_of"] == best.info.run_id
    assert parent.data.tags["refit_run_id"] == refit.info.run_id
    assert parent.data.metrics["refit_test_accuracy"] == refit.data.metrics["test_accuracy"] > 0.8
    rows = list(csv.DictReader((sweep_dir / "comparison" / "runs.csv").open()))
    assert len(rows) == 4 and all(row["val_loss_std"] for row in rows)
    table = json.loads((sweep_dir / "comparison" / "runs.json").read_text())
    assert table["best"]["run_id"] == best.info.run_id


def test_compare_names_the_refit_under_the_points(tracking_uri) -> None:
    """`scratchlab compare` prints the refit run and its test scores after the table of points
    (the refit itself is not a point)."""
    from mlflow import MlflowClient

    from scratchlab.sweeps.compare import gather_runs, table_text

    client = MlflowClient()
    experiment = client.create_experiment("cv")
    parent = client.create_run(experiment, tags={"sweep_role": "parent",
                                                 "sweep_keys": "optimizer.lr"}).info.run_id
    child = client.create_run(experiment, run_name="optimizer.lr=0.1", tags={
        "mlflow.parentRunId": parent, "sweep_role": "child", "job_num": "0"}).info.run_id
    client.log_param(child, "optimizer.lr", "0.1")
    client.log_metric(child, "val_loss", 0.3)
    client.log_metric(child, "val_loss_std", 0.02)
    client.set_terminated(child)
    refit = client.create_run(experiment, tags={"mlflow.parentRunId": parent,
                                                "sweep_role": "refit"}).info.run_id
    client.set_tag(parent, "refit_run_id", refit)
    client.log_metric(parent, "refit_test_accuracy", 0.93)
    comparison = gather_runs("cv", parent, False, "val_loss")
    assert [r.run_id for r in comparison.runs] == [child]
    assert table_text(comparison).splitlines()[-1] == (
        f"refit of the best point on all the training data: run {refit[:8]}, tested once: "
        "test_accuracy 0.9300")
