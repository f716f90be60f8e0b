"""Callbacks ``fit`` calls around training, and the History they read and write.

A callback sees every epoch's metrics and may stop training by returning a reason:
:class:`EarlyStopping` (patience on a monitored metric, best weights restored) and
:class:`DivergenceGuard` (a loss that stays well above the untrained net's) are the two
``fit``'s config knows; a logger is an :class:`EpochEnd` around any function.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from scratchlab.core.rules import rules_of
from scratchlab.nn.network import Network
from scratchlab.spec.training import DivergenceSpec, EarlyStoppingSpec

DIVERGED, STOPPED_EARLY = "diverged", "stopped_early"


@dataclass
class History:
    """Per-epoch metrics and how training ended (``stop_reason``: None when all epochs ran)."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    best_epoch: int | None = None
    initial_loss: float | None = None  # the first mini-batch's, before any update
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


@dataclass
class DivergenceGuard(Callback):
    """Diverged: the mean training loss of the last ``patience`` epochs is above ``factor``
    times the untrained net's (``history.initial_loss``); checked after every epoch, and when
    training ends over the epochs there were (a 2-epoch run that blew up is flagged too).

    A NaN/inf loss always stops training as diverged (``fit`` itself checks every batch); this
    guard catches the saturating blow-ups that never reach NaN (a sigmoid/softmax net pushed
    into saturation by a huge step: momentum lr=10 on digits sits at 1.3-3x the untrained loss
    for good). A mean over a window, above 1.5x, because converging runs cross the untrained
    loss too: a plateau at chance level sits at 1.00-1.03x it for epochs (iris, plain SGD),
    and momentum overshoots to 1.3-1.7x for an epoch or two before converging (iris, wine, an
    easy 3-class table); no window of 3 of those epochs averages above 1.25x.
    """

    factor: float = 1.5
    patience: int = 3
    recent: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self, DivergenceSpec)

    def on_train_begin(self, net: Network, history: History) -> None:
        self.recent = []

    def on_epoch_end(self, epoch, logs, net, history):
        self.recent = [*self.recent, logs["loss"]][-self.patience:]
        return DIVERGED if len(self.recent) == self.patience and self._worse(history) else None

    def on_train_end(self, net: Network, history: History) -> None:
        if history.stop_reason is None and self.recent and self._worse(history):
            history.stop_reason = DIVERGED  # ended worse than it started

    def _worse(self, history: History) -> bool:
        reference = history.initial_loss
        if reference is None or not reference > 0:
            return False
        return sum(self.recent) / len(self.recent) > self.factor * reference


def _check(callback: Callback, spec: type) -> None:
    """Check the callback's arguments with the rules of its spec (``scratchlab.spec.training``)."""
    for name, rule in rules_of(spec).items():
        rule.check(name, getattr(callback, name))
