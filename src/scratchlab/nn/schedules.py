"""Learning-rate schedules: the lr of every update as a pure function of training time.

A schedule is a function ``lr(t)`` of ``t``, the epochs elapsed when an update starts
(``t = step / steps_per_epoch``, so ``t = 3.5`` is half-way through the fourth epoch); it keeps
no state, and training at step ``s`` always gets ``lr(s / steps_per_epoch)``. With ``lr`` the
optimizer's learning rate and ``T`` the epochs of training:

    constant      lr(t) = lr
    step          lr(t) = lr * gamma ** floor(t / step_size)             (Keras, PyTorch StepLR)
    exponential   lr(t) = lr * gamma ** t                                 (per-epoch factor gamma)
    cosine        lr(t) = min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2  (Loshchilov & Hutter)
    onecycle      up from lr / div_factor to lr over the first pct_start of training, then down
                  to lr / (div_factor final_div_factor), both along half a cosine (Smith 2018,
                  PyTorch OneCycleLR, fastai fit_one_cycle)

A linear warm-up of ``W`` epochs goes in front of the first four: the lr rises from 0 to the
schedule's starting lr, ``lr(t) = (t / W) lr``, then the schedule runs over the remaining
``T - W`` epochs as if training began at ``t = W``.

:class:`LearningRateScheduler` is the callback ``fit`` runs it with: it sets the optimizer's
``lr`` before each mini-batch and logs the lr each epoch started with as the metric ``lr``.
Its only state is the step count, so it resumes where training resumes (:meth:`state_dict`).
Gradients never see a schedule: it changes the size of a step, not its direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scratchlab.nn.callbacks import Callback, History
from scratchlab.nn.network import Network
from scratchlab.spec.optim import check_schedule


@dataclass(frozen=True)
class Constant:
    lr: float

    def __call__(self, t: float) -> float:
        return self.lr


@dataclass(frozen=True)
class StepDecay:
    """Multiply the lr by ``gamma`` every ``step_size`` epochs."""

    lr: float
    step_size: float = 10
    gamma: float = 0.1

    def __call__(self, t: float) -> float:
        return self.lr * self.gamma ** math.floor(t / self.step_size)


@dataclass(frozen=True)
class ExponentialDecay:
    """Multiply the lr by ``gamma`` per epoch, smoothly (``gamma ** t``)."""

    lr: float
    gamma: float = 0.95

    def __call__(self, t: float) -> float:
        return self.lr * self.gamma**t


@dataclass(frozen=True)
class CosineAnnealing:
    """Half a cosine from ``lr`` at ``t = 0`` down to ``min_lr`` at ``t = epochs``."""

    lr: float
    epochs: float
    min_lr: float = 0.0

    def __call__(self, t: float) -> float:
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * t / self.epochs)) / 2


def _cosine_from_to(start: float, end: float, fraction: float) -> float:
    """Half a cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


@dataclass(frozen=True)
class OneCycle:
    """Warm up from ``lr / div_factor`` to ``lr`` over ``pct_start`` of training, then anneal to
    ``lr / (div_factor final_div_factor)``."""

    lr: float
    epochs: float
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __call__(self, t: float) -> float:
        start = self.lr / self.div_factor
        peak_at = self.pct_start * self.epochs
        if t < peak_at:
            return _cosine_from_to(start, self.lr, t / peak_at)
        end = start / self.final_div_factor
        return _cosine_from_to(self.lr, end, (t - peak_at) / (self.epochs - peak_at))


@dataclass(frozen=True)
class Warmup:
    """``epochs`` of linear warm-up from 0, then ``after`` (which starts at its own t = 0)."""

    after: Constant | StepDecay | ExponentialDecay | CosineAnnealing
    epochs: float

    def __call__(self, t: float) -> float:
        if t < self.epochs:
            return t / self.epochs * self.after(0.0)
        return self.after(t - self.epochs)


Schedule = Constant | StepDecay | ExponentialDecay | CosineAnnealing | OneCycle | Warmup


def make_schedule(name: str, lr: float, epochs: int, **params: float) -> Schedule:
    """The schedule called ``name`` (``optimizer.schedule``) for ``epochs`` of training from
    ``lr``, its parameters checked by the rules of ``scratchlab.spec.optim``."""
    params = check_schedule(name, params, lr, epochs)
    warmup = params.pop("warmup_epochs", 0.0)
    remaining = epochs - warmup
    schedule = {
        "constant": lambda: Constant(lr),
        "step": lambda: StepDecay(lr, **params),
        "exponential": lambda: ExponentialDecay(lr, **params),
        "cosine": lambda: CosineAnnealing(lr, remaining, **params),
        "onecycle": lambda: OneCycle(lr, epochs, **params),
    }[name]()
    return Warmup(schedule, warmup) if warmup else schedule


class LearningRateScheduler(Callback):
    """Sets ``optimizer.lr = schedule(step / steps_per_epoch)`` before every mini-batch and adds
    the lr each epoch started with to its logs and history (``lr``).

    ``step`` counts the updates this scheduler has seen, across ``fit`` calls: fitting 3 epochs
    then 3 more with the same optimizer and scheduler is fitting 6. That count is the whole
    state (:meth:`state_dict`): a run resumed from a checkpoint restores it, and every lr after
    is the one the uninterrupted run would have used.
    """

    def __init__(self, optimizer, schedule: Schedule, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch={steps_per_epoch} must be at least 1")
        self.optimizer = optimizer
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        self.epoch_lr = math.nan

    def on_train_begin(self, net: Network, history: History) -> None:
        history.history.setdefault("lr", [])  # fit appends a placeholder each epoch

    def on_batch_begin(self, epoch: int, batch: int) -> None:
        lr = self.schedule(self.step / self.steps_per_epoch)
        self.optimizer.lr = lr
        if batch == 0:
            self.epoch_lr = lr
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, float], net: Network,
                     history: History) -> None:
        logs["lr"] = history.history["lr"][-1] = self.epoch_lr

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def steps_per_epoch(n: int, batch_size: int) -> int:
    """The mini-batches ``fit`` makes of ``n`` samples: the last, partial one included."""
    return math.ceil(n / min(batch_size, n))
