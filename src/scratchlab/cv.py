"""A cross-validated job (``train.cv_folds=k``): k trainings scored on their held-out fold.

Like one point of scikit-learn's ``GridSearchCV``: the config is trained on k-1 folds of the
training split and scored on the k-th, k times; the job's objective is the mean final fold
``val_loss``. One MLflow run holds it all: the fold scores as metric series
(``cv_val_loss``/``cv_val_accuracy``, step = fold 1..k), their mean and standard deviation
(``cv_val_loss_mean``/``_std``, ``np.std`` as GridSearchCV's ``std_test_score``), and the
per-epoch curves averaged over the folds as ``loss``/``val_loss``/... (what the sweep's
comparison figure draws). The test split is not touched: a sweep tests only its refit best
point (``scratchlab.sweeps.refit``), once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scratchlab.config import Config
from scratchlab.data.folds import fold_splits
from scratchlab.data.splits import Splits
from scratchlab.errors import DivergedError
from scratchlab.io import write_json_atomic
from scratchlab.nn.callbacks import History
from scratchlab.runs import tracked_run
from scratchlab.trainer import preflight, train_network

log = logging.getLogger(__name__)

CV_FILE = "cv.json"
SCORED = ("val_loss", "val_accuracy")  # a fold's score: its final held-out metrics


def run_cv_job(config: Config, splits: Splits, manifest: Mapping[str, Any], out_dir: Path, *,
               run_name: str | None = None, tags: Mapping[str, str] | None = None,
               parent_run_id: str | None = None) -> float:
    """Train and score every fold into one run (``cv.json`` in ``out_dir``); return the mean
    fold val_loss. A diverged fold makes the job diverged (run FAILED, DivergedError)."""
    k = config.train.cv_folds
    folds = fold_splits(splits, k, config.data.split_seed)
    for fold in folds:  # before a run is started for nothing
        preflight(config, fold)
    with tracked_run(config, manifest, out_dir, run_name=run_name,
                     tags={**(tags or {}), "cv_folds": str(k)},
                     parent_run_id=parent_run_id) as recorder:
        histories: list[History] = []
        for i, fold in enumerate(folds, start=1):
            history = train_network(config, fold).history
            if history.diverged:
                epoch = history.diverged_epoch + 1
                recorder.set_tags({"diverged": "true", "diverged_epoch": epoch,
                                   "diverged_fold": i})
                raise DivergedError(
                    f"optimizer.lr={config.optimizer.hyper['lr']}: loss diverged at epoch "
                    f"{epoch} of fold {i}/{k}; MLflow run {recorder.run_id} marked FAILED "
                    "(tag diverged)")
            recorder.log_metrics({f"cv_{m}": history.history[m][-1]
                                  for m in SCORED if m in history.history}, step=i)
            histories.append(history)
            log.info("fold %d/%d: val_loss %.4f", i, k, history.history["val_loss"][-1])
        for epoch, logs in enumerate(mean_curves(histories), start=1):
            recorder.log_metrics(logs, step=epoch)
        summary = cv_summary(histories)
        recorder.log_metrics(summary)
        recorder.set_tags({"diverged": "false",
                           "epochs_run": max(h.epochs_run for h in histories)})
        write_json_atomic(out_dir / CV_FILE, {
            "folds": k, **summary,
            "fold_scores": [{m: h.history[m][-1] for m in SCORED if m in h.history}
                            for h in histories],
        })
        recorder.log_artifacts([out_dir / CV_FILE])
    log.info("cv: val_loss %.4f +- %.4f over %d folds", summary["cv_val_loss_mean"],
             summary["cv_val_loss_std"], k)
    return summary["cv_val_loss_mean"]


def cv_summary(histories: list[History]) -> dict[str, float]:
    """Mean and (population) standard deviation of the folds' final held-out metrics."""
    out = {}
    for metric in SCORED:
        scores = np.array([h.history[metric][-1] for h in histories if metric in h.history])
        if len(scores):
            out[f"cv_{metric}_mean"] = float(scores.mean())
            out[f"cv_{metric}_std"] = float(scores.std())
    return out


def mean_curves(histories: list[History]) -> list[dict[str, float]]:
    """Per epoch, each metric averaged over the folds that trained that epoch."""
    epochs = max(h.epochs_run for h in histories)
    return [
        {key: float(np.mean([h.history[key][e] for h in histories if e < h.epochs_run]))
         for key in histories[0].history}
        for e in range(epochs)
    ]
