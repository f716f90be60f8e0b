"""One tracked job: train and evaluate a config into one MLflow run, files in one folder.

The Hydra app and the sweeps run jobs; the DVC stages run the same steps as two processes
(``stages/train.py``, ``stages/evaluate.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scratchlab.config import Config
from scratchlab.data.splits import Splits
from scratchlab.evaluation import record_evaluation, test_report, write_reports
from scratchlab.numerics import blas_threads
from scratchlab.runs import record_training, title, tracked_run
from scratchlab.tracking.recorder import EpochMetrics
from scratchlab.trainer import preflight, train_network

log = logging.getLogger(__name__)


def run_job(config: Config, splits: Splits, manifest: Mapping[str, Any], out_dir: Path, *,
            run_name: str | None = None, tags: Mapping[str, str] | None = None,
            parent_run_id: str | None = None) -> float:
    """Train and evaluate into one run (files in ``out_dir``); return the final val_loss."""
    preflight(config, splits)  # before a run is started for nothing
    with tracked_run(config, manifest, out_dir, run_name=run_name, tags=tags,
                     parent_run_id=parent_run_id) as recorder:
        trained = train_network(config, splits, [EpochMetrics(recorder)])
        record_training(recorder, config, trained.net, trained.history, out_dir)
        with blas_threads(config.train.deterministic):  # test metrics: same bits as weights
            evaluation = test_report(trained.net, splits, title(config))
        files = write_reports(evaluation, out_dir)
        example = splits.test.X[:5] if config.tracking.log_model else None
        record_evaluation(recorder, evaluation, files, trained.net, example)
    log.info("test metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in evaluation.metrics.items()))
    return float(trained.history.history["val_loss"][-1])


def run_config(config: Config, out_dir: Path, **run: Any) -> float:
    """Prepare the config's data (cached), then :func:`run_job` (or, with ``train.cv_folds``,
    the cross-validated job); return the final (mean fold) val_loss."""
    from scratchlab.prepare import prepare_data

    splits, manifest = prepare_data(config)
    if config.train.cv_folds:
        from scratchlab.cv import run_cv_job

        return run_cv_job(config, splits, manifest, out_dir, **run)
    return run_job(config, splits, manifest, out_dir, **run)
