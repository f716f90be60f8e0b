"""The optimizers by name, the hyperparameters each takes, and what each value must be.

``scratchlab.nn.optimizers.make_optimizer`` and the ``optimizer`` config group both check values
with :func:`check_optimizer`, so the rules live here once.
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
