"""Callbacks ``fit`` calls around training, and the History they read and write.

A callback sees every epoch's metrics and may stop training by returning a reason:
:class:`EarlyStopping` (patience on a monitored metric, best weights restored) and
:class:`DivergenceGuard` (a sustained blow-up above both the untrained net's loss and the
loss of knowing nothing) are the two ``fit``'s config knows; a logger is an :class:`EpochEnd`
around any function.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from scratchlab.core.rules import rules_of
from scratchlab.nn.backend import xp
from scratchlab.nn.network import Network
from scratchlab.spec.network import NetworkSpec
from scratchlab.spec.training import DivergenceSpec, EarlyStoppingSpec

DIVERGED, STOPPED_EARLY = "diverged", "stopped_early"


@dataclass
class History:
    """Per-epoch metrics and how training ended (``stop_reason``: None when all epochs ran)."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    best_epoch: int | None = None
    initial_loss: float | None = None  # the first mini-batch's, before any update
    chance_loss: float | None = None  # the best constant prediction's (:func:`chance_loss`)
    updates_per_epoch: int | None = None  # optimizer steps in one epoch
    stop_reason: str | None = None

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason == STOPPED_EARLY

    @property
    def diverged(self) -> bool:
        return self.stop_reason == DIVERGED

    @property
    def diverged_epoch(self) -> int | None:
        return self.epochs_run - 1 if self.diverged else None


class Callback:
    """What ``fit`` calls around training; override the hooks you need."""

    def on_train_begin(self, net: Network, history: History) -> None:
        """Before the first epoch; ``history.history`` already lists the metrics to come."""

    def on_batch_begin(self, epoch: int, batch: int) -> None:
        """Before each mini-batch (``batch`` counts from 0 in each epoch), e.g. to set the
        optimizer's lr (``scratchlab.nn.schedules``)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float], net: Network,
                     history: History) -> str | None:
        """After each epoch's metrics are known; return a stop reason to end training."""
        return None

    def on_train_end(self, net: Network, history: History) -> None:
        """After the last epoch, however training ended."""


class EpochEnd(Callback):
    """Calls ``fn(epoch, logs)`` after each epoch (a logger, a progress hook)."""

    def __init__(self, fn: Callable[[int, dict[str, float]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch, logs, net, history):
        self.fn(epoch, logs)


@dataclass
class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best`` the best epoch's weights are put back when training ends
    (stopped early or not). ``*accuracy`` monitors are maximized, ``*loss`` minimized."""

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    best: float | None = field(default=None, init=False)
    best_epoch: int | None = field(default=None, init=False)
    best_state: dict | None = field(default=None, init=False, repr=False)
    wait: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        _check(self, EarlyStoppingSpec)

    @property
    def maximize(self) -> bool:
        return self.monitor.endswith("accuracy")

    def on_train_begin(self, net: Network, history: History) -> None:
        if self.monitor not in history.history:
            raise ValueError(
                f"monitor={self.monitor!r} is not measured by this fit (it measures "
                f"{', '.join(history.history)}: val_* needs validation data, accuracy a "
                "classifier)"
            )
        self.best, self.best_epoch, self.best_state, self.wait = None, None, None, 0

    def on_epoch_end(self, epoch, logs, net, history):
        value = logs[self.monitor]
        if math.isfinite(value) and (self.best is None or self._improved(value)):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = net.state_dict()
            return None
        self.wait += 1
        return STOPPED_EARLY if self.wait >= self.patience else None

    def _improved(self, value: float) -> bool:
        if self.maximize:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_end(self, net: Network, history: History) -> None:
        if self.restore_best and self.best_state is not None:
            net.load_state_dict(self.best_state)
        history.best_epoch = self.best_epoch


def chance_loss(Y, spec: NetworkSpec) -> float | None:
    """The loss of the best constant prediction of the targets ``Y`` (their column means): the
    least a net that learned nothing can reach. Cross-entropy: the entropy of the class shares
    (summed per output for sigmoid outputs); mse: half the summed variance. None if undefined."""
    p = Y.mean(axis=0, dtype=xp.float64)
    if spec.loss == "mse":
        value = 0.5 * float(xp.sum(Y.var(axis=0, dtype=xp.float64)))
    else:
        entropy = -p * xp.log(xp.clip(p, 1e-300, 1.0))
        if spec.output == "sigmoid":
            entropy -= (1.0 - p) * xp.log(xp.clip(1.0 - p, 1e-300, 1.0))
        value = float(xp.sum(entropy))
    return value if math.isfinite(value) else None


@dataclass
class DivergenceGuard(Callback):
    """Stop a run whose loss has blown up and stays blown up while nothing shows it learning.

    Diverged (besides a NaN/inf batch loss, which ``fit`` stops at once): over a *sustained*
    window, the last ``patience`` epochs or, if more, as many epochs as ``updates`` optimizer
    steps take (``history.updates_per_epoch``),

    - every epoch's training loss was above ``factor`` x the reference: the larger of the
      untrained net's loss (``history.initial_loss``) and the chance loss (that of the best
      constant prediction, ``history.chance_loss``): worse than where it started and than
      knowing nothing, and
    - the validation loss made no progress: none of the window's ``val_loss`` values was
      below both the chance loss and every earlier one (without validation data there is no
      such evidence).

    A run shorter than that window is judged when it ends, over the epochs it had. Why these
    terms: a run that learns gets below the chance loss; one that blew up sits far above it
    and its validation loss wanders above it too, so a wandering minimum there is no progress.
    Converging runs blow up too, but briefly: a momentum overshoot lasts a few times the
    optimizer's memory (1/(1-0.9) = 10 steps at the default momentum), a plateau sits at
    1.00-1.03x the reference. So the window is long in optimizer steps (100, 10x that memory),
    not only in epochs (a small table takes 2 steps an epoch), and 1.25x is clear of the
    plateau (docs/reliability.md).
    """

    factor: float = DivergenceSpec.factor
    patience: int = DivergenceSpec.patience
    updates: int = DivergenceSpec.updates
    losses: list[float] = field(default_factory=list, init=False, repr=False)
    best_val: float | None = field(default=None, init=False)
    progress_epoch: int = field(default=-1, init=False)

    def __post_init__(self) -> None:
        _check(self, DivergenceSpec)

    def on_train_begin(self, net: Network, history: History) -> None:
        self.losses, self.best_val, self.progress_epoch = [], None, -1

    def on_epoch_end(self, epoch, logs, net, history):
        self.losses.append(logs["loss"])
        value = logs.get("val_loss")
        if value is not None and math.isfinite(value):
            floor = min(v for v in (self.best_val, history.chance_loss, math.inf)
                        if v is not None)
            if value < floor:
                self.progress_epoch = epoch
            self.best_val = value if self.best_val is None else min(self.best_val, value)
        return DIVERGED if self._blown_up(self.window(history), history) else None

    def on_train_end(self, net: Network, history: History) -> None:
        window = min(self.window(history), len(self.losses))
        if history.stop_reason is None and window and self._blown_up(window, history):
            history.stop_reason = DIVERGED  # ended blown up without ever learning

    def window(self, history: History) -> int:
        """Epochs a blow-up must last: ``patience``, or more for ``updates`` steps."""
        steps = history.updates_per_epoch
        return max(self.patience, math.ceil(self.updates / steps) if steps else 0)

    def _blown_up(self, window: int, history: History) -> bool:
        known = [v for v in (history.initial_loss, history.chance_loss)
                 if v is not None and math.isfinite(v)]
        if len(self.losses) < window or not known or not max(known) > 0:
            return False
        limit = self.factor * max(known)
        start = len(self.losses) - window
        return self.progress_epoch < start and all(v > limit for v in self.losses[start:])


def _check(callback: Callback, spec: type) -> None:
    """Check the callback's arguments with the rules of its spec (``scratchlab.spec.training``)."""
    for name, rule in rules_of(spec).items():
        rule.check(name, getattr(callback, name))
