"""One tracked job: train and evaluate a config into one MLflow run, files in one folder.

The Hydra app and the sweeps run jobs; the DVC stages run the same steps as two processes
(``stages/train.py``, ``stages/evaluate.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scratchlab.config import Config
from scratchlab.core.errors import DivergedError
from scratchlab.pipeline.crossval import cross_validate
from scratchlab.pipeline.evaluation import evaluate, record_evaluation, write_reports
from scratchlab.pipeline.record import record_training, title, tracked_run
from scratchlab.pipeline.training import preflight, train
from scratchlab.spec.splits import Splits
from scratchlab.tracking.recorder import EpochMetrics

log = logging.getLogger(__name__)


def run_job(config: Config, splits: Splits, manifest: Mapping[str, Any], out_dir: Path, *,
            run_name: str | None = None, tags: Mapping[str, str] | None = None,
            parent_run_id: str | None = None) -> float:
    """Train and evaluate into one run (files in ``out_dir``); return the final val_loss (with
    ``train.cv_folds``, the cross-validated one: :func:`run_cv_job`)."""
    preflight(config, splits)  # before a run is started for nothing
    if config.train.cv_folds:
        return run_cv_job(config, splits, manifest, out_dir, run_name=run_name, tags=tags,
                          parent_run_id=parent_run_id)
    with tracked_run(config, manifest, out_dir, splits=splits, run_name=run_name, tags=tags,
                     parent_run_id=parent_run_id) as recorder:
        trained = train(config, splits, [EpochMetrics(recorder)])
        record_training(recorder, config, trained.net, trained.history, out_dir)
        evaluation = evaluate(trained.net, splits, title(config), config.train.deterministic)
        files = write_reports(evaluation, out_dir)
        example = splits.test.X[:5] if config.tracking.log_model else None
        record_evaluation(recorder, evaluation, files, trained.net, example)
    log.info("test metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in evaluation.metrics.items()))
    return float(trained.history.history.get("val_loss", [math.nan])[-1])


def run_cv_job(config: Config, splits: Splits, manifest: Mapping[str, Any], out_dir: Path,
               **run: Any) -> float:
    """Score the config by k-fold cross-validation into one run: fold scores as metric series
    ``cv_val_loss``/``cv_val_accuracy`` (step = fold), their means as ``val_loss``/
    ``val_accuracy`` and spreads as ``*_std``; the test split is left for the refit."""
    with tracked_run(config, manifest, out_dir, splits=splits, **run) as recorder:
        cv = cross_validate(config, splits)
        for key, values in cv.folds.items():
            for fold, value in enumerate(values, start=1):
                recorder.log_metrics({f"cv_{key}": value}, step=fold)
        recorder.set_tags({"cv_folds": config.train.cv_folds,
                           "diverged": "true" if cv.diverged else "false"})
        if cv.diverged:
            raise DivergedError(f"optimizer.lr={config.optimizer.hyper['lr']}: loss diverged in "
                                f"cross-validation fold(s) {cv.diverged}; MLflow run "
                                f"{recorder.run_id} marked FAILED (tag diverged)")
        summary = cv.summary()
        recorder.log_metrics(summary)
    log.info("cross-validation (%d folds): %s", config.train.cv_folds,
             ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    return summary["val_loss"]


def run_config(config: Config, out_dir: Path, **run: Any) -> float:
    """Prepare the config's data (cached), then :func:`run_job`; return the final val_loss."""
    from scratchlab.pipeline.prepare import prepare_data

    splits, manifest = prepare_data(config)
    return run_job(config, splits, manifest, out_dir, **run)
