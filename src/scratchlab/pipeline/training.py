"""Train the configured network: config + splits -> trained network + history. No tracker here.

The Hydra app, the DVC train stage, the sweeps, the benchmarks and ``scratchlab gradcheck``
all build and train through this module; MLflow sees training only through the callbacks its
caller passes in (``scratchlab.tracking.recorder.EpochMetrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scratchlab.config import Config, validate_batch_size
from scratchlab.config.schema import TrainConfig
from scratchlab.core.numerics import blas_threads
from scratchlab.nn.callbacks import Callback, DivergenceGuard, EarlyStopping, History
from scratchlab.nn.loop import fit
from scratchlab.nn.network import Network, build_network
from scratchlab.nn.optimizers import make_optimizer
from scratchlab.nn.schedules import LearningRateScheduler, make_schedule, steps_per_epoch
from scratchlab.pipeline.memory import check_fits
from scratchlab.spec.network import NetworkSpec
from scratchlab.spec.splits import Splits


@dataclass
class Trained:
    """What training leaves behind for evaluation, persistence and tracking."""

    net: Network
    history: History


def training_callbacks(train: TrainConfig) -> list[Callback]:
    """The callbacks ``train.*`` asks for: the divergence guard, and early stopping if enabled."""
    callbacks: list[Callback] = [
        DivergenceGuard(factor=train.divergence_factor, patience=train.divergence_patience,
                        updates=train.divergence_updates)
    ]
    stopping = train.early_stopping
    if stopping.enabled:
        callbacks.append(EarlyStopping(monitor=stopping.monitor, patience=stopping.patience,
                                       min_delta=stopping.min_delta,
                                       restore_best=stopping.restore_best))
    return callbacks


def lr_scheduler(config: Config, optimizer, n_train: int) -> LearningRateScheduler:
    """The callback that gives ``optimizer`` the lr of ``optimizer.schedule`` before each
    mini-batch and logs it per epoch (``lr``); first in line, so the trackers see ``lr``."""
    opt = config.optimizer
    schedule = make_schedule(opt.schedule, opt.hyper["lr"], config.train.epochs,
                             **opt.schedule_params)
    return LearningRateScheduler(optimizer, schedule,
                                 steps_per_epoch(n_train, config.train.batch_size))


def build_configured(config: Config, splits: Splits, dtype: str = "float32") -> tuple[
        Network, NetworkSpec, np.random.Generator]:
    """The configured network sized for ``splits``, and the seeded generator that built it
    (it goes on to draw dropout masks and batch orders, so one seed fixes the whole run)."""
    spec = config.network_spec(splits.input_dim, splits.output_dim, dtype, splits.image_shape)
    rng = np.random.default_rng(config.train.seed)
    return build_network(spec, rng), spec, rng


def preflight(config: Config, splits: Splits) -> None:
    """The config checks that need the data, before any run starts or array is allocated: the
    batch fits the training set, a conv net's blocks fit the images, the network and a batch
    fit in memory (ConfigError)."""
    validate_batch_size(config, len(splits.train))
    stopping = config.train.early_stopping
    check_fits(config.network_spec(splits.input_dim, splits.output_dim,
                                   image_shape=splits.image_shape),
               min(config.train.batch_size, len(splits.train)), config.optimizer.name,
               keeps_best=stopping.enabled and stopping.restore_best)


def train(config: Config, splits: Splits, callbacks: Sequence[Callback] = ()) -> Trained:
    """Build the configured network and fit it on ``splits.train`` (validating on ``val``).
    Callers run :func:`preflight` first, once per job, before they start a tracked run."""
    net, _, rng = build_configured(config, splits)
    optimizer = make_optimizer(config.optimizer.name, **config.optimizer.hyper)
    train = config.train
    with blas_threads(train.deterministic):
        history = fit(
            net, optimizer, splits.train.X, splits.train.Y,
            epochs=train.epochs, batch_size=train.batch_size, rng=rng,
            validation_data=(splits.val.X, splits.val.Y) if len(splits.val) else None,
            callbacks=[lr_scheduler(config, optimizer, len(splits.train)),
                       *training_callbacks(train), *callbacks],
            progress=train.progress,
        )
    return Trained(net, history)
