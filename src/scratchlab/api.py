"""The Python API for notebooks: the same config, data, trainer and store as the pipeline.

    from scratchlab import api
    config = api.config("model=mlp", "optimizer=adam", "train.epochs=30")
    splits = api.load_data(config)            # fetched once, cached under data/cache
    trained = api.train(config, splits)       # a scratchlab.nn Network and its History
    report = api.evaluate(config, trained.net, splits)
    run_id = api.log(config, trained, report) # one MLflow run in the project's store

    found = api.lr_find(config, splits)       # LR range test: found.suggestion, found.test
    api.log_lr_find(config, found)            # its figure and curve as an MLflow run
    api.promote(run_id)                       # registered, alias champion (docs/registry.md)

Each step is the function the Hydra app and the DVC stages call, so a notebook result is the
pipeline's result for the same config and seed (bit for bit, see docs/reproducibility.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from scratchlab.config import Config, compose, validate
from scratchlab.data.registry import data_config
from scratchlab.nn.callbacks import Callback
from scratchlab.nn.network import Network
from scratchlab.pipeline import evaluation, lrfind, training
from scratchlab.pipeline.evaluation import Evaluation, record_evaluation, write_reports
from scratchlab.pipeline.lrfind import LrFind
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.pipeline.record import record_training, title, tracked_run
from scratchlab.pipeline.training import Trained, preflight
from scratchlab.spec.splits import Splits
from scratchlab.tracking.registry import Promotion
from scratchlab.tracking.registry import promote as register

__all__ = ["config", "evaluate", "load_data", "log", "log_lr_find", "lr_find", "promote", "train"]


def config(*overrides: str) -> Config:
    """``conf/`` composed with Hydra overrides and checked, exactly as the Hydra app does."""
    return validate(compose(overrides), data=data_config)


def load_data(config: Config) -> Splits:
    """The config's train/val/test splits (scaled, flattened, one-hot)."""
    return prepare_data(config)[0]


def train(config: Config, splits: Splits, callbacks: Sequence[Callback] = ()) -> Trained:
    """Check the config against the data (batch size, memory), build the configured network
    and train it; ``callbacks`` see every epoch."""
    preflight(config, splits)
    return training.train(config, splits, callbacks)


def evaluate(config: Config, net: Network, splits: Splits) -> Evaluation:
    """Test metrics, report files and the confusion matrix (or regression scatter)."""
    return evaluation.evaluate(net, splits, title(config), config.train.deterministic)


def log(config: Config, trained: Trained, evaluation: Evaluation,
        run_name: str | None = None) -> str:
    """Record a notebook's run like a pipeline run (params, per-epoch curves, reports, model);
    return its MLflow run id."""
    splits, manifest = prepare_data(config)
    with tempfile.TemporaryDirectory() as tmp, tracked_run(
        config, manifest, Path(tmp), splits=splits, run_name=run_name,
        tags={"entry_point": "api"}
    ) as recorder:
        history = trained.history
        for epoch in range(history.epochs_run):  # the curves, in as few calls as it takes
            recorder.log_metrics({k: v[epoch] for k, v in history.history.items()}, epoch + 1,
                                 defer=True)
        record_training(recorder, config, trained.net, history, Path(tmp))
        files = write_reports(evaluation, Path(tmp))
        example = splits.test.X[:5] if config.tracking.log_model else None
        record_evaluation(recorder, evaluation, files, trained.net, example)
        return recorder.run_id


def lr_find(config: Config, splits: Splits, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            iterations: int = 100) -> LrFind:
    """The LR range test of the configured network and optimizer (``scratchlab lr-find``
    without the store): ``.suggestion`` (None if the loss never fell), ``.test`` (lrs, batch
    and smoothed losses). No network of yours is touched."""
    return lrfind.lr_find(config, splits, start_lr=start_lr, end_lr=end_lr,
                          iterations=iterations)


def log_lr_find(config: Config, found: LrFind, out_dir: Path | None = None) -> str:
    """Record a range test as an MLflow run (figure, curve, ``suggested_lr``), its files in
    ``out_dir`` (default: a temp dir); return the run id."""
    splits, manifest = prepare_data(config)
    if out_dir is not None:
        return lrfind.log_lr_find(config, splits, manifest, found, out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return lrfind.log_lr_find(config, splits, manifest, found, Path(tmp))


def promote(run_id: str, name: str | None = None) -> Promotion:
    """``scratchlab promote``: register the run's model as ``name`` (default
    ``<experiment>-<dataset>``) and point alias ``champion`` at it; ``.uri`` loads it."""
    return register(run_id, name)
