"""The optimizers and learning-rate schedules by name, the keys each takes, and what each
value must be.

``scratchlab.nn.optimizers.make_optimizer`` and the ``optimizer`` config group both check values
with :func:`check_optimizer`, ``scratchlab.nn.schedules.make_schedule`` and
``optimizer.schedule`` with :func:`check_schedule`, so the rules live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scratchlab.core.rules import Choice, Number, Rule

# name -> keyword arguments of its constructor, ``lr`` first (a test holds the classes to it)
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr",),
    "momentum": ("lr", "momentum"),
    "nesterov": ("lr", "momentum"),
    "adagrad": ("lr", "eps"),
    "rmsprop": ("lr", "rho", "eps"),
    "adam": ("lr", "beta1", "beta2", "eps"),
}
_UNIT = Number(0, 1, high_open=True)
HYPERPARAMETERS: dict[str, Rule] = {
    "lr": Number(0, low_open=True),
    "momentum": _UNIT,
    "beta1": _UNIT,
    "beta2": _UNIT,
    "rho": _UNIT,
    "eps": Number(0, low_open=True),
}


def check_optimizer(name: Any, hyper: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``hyper`` checked for optimizer ``name`` (``lr`` required, no key it does not take);
    ValueError/TypeError naming ``prefix + key``. Returns the values as floats."""
    Choice(tuple(OPTIMIZERS)).check(f"{prefix}name", name)
    accepted = OPTIMIZERS[name]
    for key, value in hyper.items():
        if key not in accepted:
            raise ValueError(f"{prefix}{key}: unknown key for optimizer {name!r}; "
                             f"allowed: {', '.join(('name', *accepted) if prefix else accepted)}")
        HYPERPARAMETERS[key].check(prefix + key, value)
    if "lr" not in hyper:
        raise ValueError(f"{prefix}lr: missing (it is required; set {prefix}lr=...)")
    return {key: float(value) for key, value in hyper.items()}


# Learning-rate schedules (``optimizer.schedule``): name -> the keys it takes. Times are in
# epochs; ``lr`` is the optimizer's (the peak of ``onecycle``, which has its own warm-up).
SCHEDULES: dict[str, tuple[str, ...]] = {
    "constant": ("warmup_epochs",),
    "step": ("step_size", "gamma", "warmup_epochs"),
    "exponential": ("gamma", "warmup_epochs"),
    "cosine": ("min_lr", "warmup_epochs"),
    "onecycle": ("pct_start", "div_factor", "final_div_factor"),
}
SCHEDULE_PARAMETERS: dict[str, Rule] = {
    "warmup_epochs": Number(0),
    "step_size": Number(1, integer=True),
    "gamma": Number(0, 1, low_open=True),
    "min_lr": Number(0),
    "pct_start": Number(0, 1, low_open=True, high_open=True),
    "div_factor": Number(1),
    "final_div_factor": Number(1),
}


def check_schedule(name: Any, params: Mapping[str, Any], lr: float, epochs: int,
                   prefix: str = "") -> dict[str, float]:
    """``params`` checked for schedule ``name`` over ``epochs`` from ``lr``: no key it does not
    take, each value by its rule, the warm-up shorter than training and ``min_lr`` below
    ``lr``; ValueError/TypeError naming ``prefix + key``. Returns the values as floats."""
    Choice(tuple(SCHEDULES)).check(f"{prefix}name", name)
    accepted = SCHEDULES[name]
    for key, value in params.items():
        if key not in accepted:
            raise ValueError(f"{prefix}{key}: unknown key for schedule {name!r}; "
                             f"allowed: {', '.join(('name', *accepted))}")
        SCHEDULE_PARAMETERS[key].check(prefix + key, value)
    warmup = params.get("warmup_epochs", 0)
    if warmup >= epochs:
        raise ValueError(f"{prefix}warmup_epochs={warmup} is out of range; expected a number "
                         f"in [0, {epochs}) (shorter than the {epochs} epochs of training)")
    if params.get("min_lr", 0) >= lr:
        raise ValueError(f"{prefix}min_lr={params['min_lr']} is out of range; expected a "
                         f"number in [0, {lr}) (below the optimizer's lr)")
    return {key: float(value) for key, value in params.items()}
