"""Pruning: stop a trial whose validation loss is hopeless next to the other trials' at the same
epoch, on one machine or across workers sharing the study.

Each trial reports its ``val_loss`` after every epoch (step = epoch, from 1, as in MLflow)
through :class:`ReportToTrial`, a training callback the trial passes in like the MLflow one; the
study's pruner answers, and a pruned trial stops training there. Its MLflow run ends FINISHED
with tags ``pruned=true`` and ``pruned_epoch`` and its curves so far (``pipeline.job``), and
Optuna records it PRUNED. The pruner is declared in the search-space file (``pruner``, with
settings under ``pruners``) or picked with ``--pruner``:

- ``none``: every trial runs all its epochs.
- ``median``: Optuna's ``MedianPruner``: stopped when its best loss so far is worse than the
  median of the completed trials' at the same epoch, once ``startup_trials`` trials completed
  and from epoch ``warmup_epochs`` on.
- ``successive_halving``: asynchronous successive halving: at epochs ``min_epochs`` x
  ``reduction_factor``^k, only the best 1/``reduction_factor`` of the trials that got there
  go on.
- ``hyperband``: several successive-halving brackets with different ``min_epochs`` budgets,
  up to ``train.epochs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from scratchlab.core.errors import ConfigError
from scratchlab.core.rules import Choice, Number, build, nested, ruled
from scratchlab.core.signals import deferred_interrupts
from scratchlab.nn.callbacks import Callback
from scratchlab.sweeps.parent import TAG_PRUNED

PRUNED = TAG_PRUNED  # the stop reason, which ``pipeline.job`` makes the run's tags
MONITOR = "val_loss"
PRUNERS = ("none", "median", "successive_halving", "hyperband")


@dataclass(frozen=True)
class MedianSettings:
    startup_trials: int = ruled(Number(0, integer=True), default=5)
    warmup_epochs: int = ruled(Number(1, integer=True), default=3)


@dataclass(frozen=True)
class HalvingSettings:
    min_epochs: int = ruled(Number(1, integer=True), default=1)
    reduction_factor: int = ruled(Number(2, integer=True), default=3)


@dataclass(frozen=True)
class PrunerSettings:
    median: MedianSettings = nested(MedianSettings, default_factory=MedianSettings)
    successive_halving: HalvingSettings = nested(HalvingSettings,
                                                 default_factory=HalvingSettings)
    hyperband: HalvingSettings = nested(HalvingSettings, default_factory=HalvingSettings)


@dataclass(frozen=True)
class Pruning:
    """The ``pruner`` and ``pruners`` keys of a search-space file."""

    pruner: str = ruled(Choice(PRUNERS), default="none")
    pruners: PrunerSettings = nested(PrunerSettings, default_factory=PrunerSettings)

    @property
    def enabled(self) -> bool:
        return self.pruner != "none"


def load_pruning(raw: dict[str, Any], path: Path, pruner: str | None = None) -> Pruning:
    """The pruning keys of the search-space file at ``path`` (``raw``, its parsed contents),
    with ``pruner`` (``--pruner``) in place of the file's choice when given."""
    values = {k: raw[k] for k in ("pruner", "pruners") if k in raw}
    if pruner is not None:
        values["pruner"] = pruner
    try:
        return build(Pruning, values)
    except (TypeError, ValueError) as exc:
        where = "--pruner" if pruner is not None and str(exc).startswith("pruner=") else path
        raise ConfigError(f"{where}: {exc}") from exc


def make_pruner(pruning: Pruning, max_epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``pruning`` names, for trials of at most ``max_epochs`` epochs."""
    settings = pruning.pruners
    if pruning.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.median.startup_trials,
            n_warmup_steps=settings.median.warmup_epochs)
    if pruning.pruner == "successive_halving":
        halving = settings.successive_halving
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=halving.min_epochs, reduction_factor=halving.reduction_factor)
    if pruning.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=settings.hyperband.min_epochs, max_resource=max_epochs,
            reduction_factor=settings.hyperband.reduction_factor)
    return optuna.pruners.NopPruner()


def first_prunable_epoch(pruning: Pruning) -> int:
    """The first epoch at which the pruner may stop a trial: asking it before then would only
    cost a read of the study (tens of milliseconds on SQLite: more than a digits epoch)."""
    settings = pruning.pruners
    return {"median": settings.median.warmup_epochs,
            "successive_halving": settings.successive_halving.min_epochs,
            "hyperband": settings.hyperband.min_epochs}.get(pruning.pruner, 1)


class ReportToTrial(Callback):
    """Each epoch's ``val_loss`` to the Optuna trial; stops training as ``pruned`` when the
    study's pruner says so, asked from epoch ``ask_from`` on (``pruned_epoch`` then holds the
    epoch, from 1)."""

    def __init__(self, trial: optuna.Trial, ask_from: int = 1) -> None:
        self.trial = trial
        self.ask_from = ask_from
        self.pruned_epoch: int | None = None

    def on_epoch_end(self, epoch, logs, net, history):
        value = logs.get(MONITOR)
        if value is None or not math.isfinite(value):  # a diverging run is the guard's to stop
            return None
        step = epoch + 1
        with deferred_interrupts():  # storage writes and reads
            self.trial.report(value, step)
            prune = step >= self.ask_from and self.trial.should_prune()
        if prune:
            self.pruned_epoch = step
            return PRUNED
        return None
