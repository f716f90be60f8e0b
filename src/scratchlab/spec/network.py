"""A network's architecture as data: the ``model.*`` config keys and ``build_network``'s input.

Layout per hidden layer ``i``: ``dense{i}`` [-> ``batchnorm{i}``] -> activation [-> dropout],
then a final ``dense{L}`` producing logits, an output activation and a loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from scratchlab.core.rules import Choice, Flag, Number, Sizes, check_fields, ruled

ACTIVATIONS = ("sigmoid", "relu", "tanh", "linear")
OUTPUTS = ("softmax", "sigmoid", "linear")
LOSSES = ("cross_entropy", "mse")
DTYPES = ("float32", "float64")
INITIALIZERS = ("he", "xavier", "normal", "epsilon")
INIT_SCALE = Number(0, low_open=True)


def check_output_loss(output: str, loss: str) -> None:
    """Cross-entropy needs probabilities: a linear output goes with the mse loss only."""
    if loss == "cross_entropy" and output == "linear":
        raise ValueError(
            "loss='cross_entropy' needs probabilities; use output 'softmax' or 'sigmoid', "
            "or loss 'mse' for a linear output"
        )


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture and regularization of a network; checked on construction.

    Its field rules are also the ``model.*`` config rules (``scratchlab.config.schema``).
    """

    input_dim: int = ruled(Number(1, integer=True))
    output_dim: int = ruled(Number(1, integer=True))
    hidden: tuple[int, ...] = ruled(Sizes(), default=())
    activation: str = ruled(Choice(ACTIVATIONS), default="sigmoid")
    output: str = ruled(Choice(OUTPUTS), default="softmax")
    loss: str = ruled(Choice(LOSSES), default="cross_entropy")
    dropout: float = ruled(Number(0, 1, high_open=True), default=0.0)
    batchnorm: bool = ruled(Flag(), default=False)
    init: str = ruled(Choice(INITIALIZERS), default="xavier")
    init_scale: float = ruled(INIT_SCALE, default=0.01)
    weight_decay: float = ruled(Number(0), default=0.0)
    dtype: str = ruled(Choice(DTYPES), default="float32")

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "hidden", Sizes().check("hidden", self.hidden))
        for key in ("input_dim", "output_dim"):
            object.__setattr__(self, key, int(getattr(self, key)))
        for key in ("dropout", "init_scale", "weight_decay"):
            object.__setattr__(self, key, float(getattr(self, key)))
        check_output_loss(self.output, self.loss)

    @property
    def classification(self) -> bool:
        return self.loss == "cross_entropy"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``hidden`` as a list)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Any, **overrides: Any) -> NetworkSpec:
        """Build from a mapping (e.g. a saved ``model.json``) plus ``overrides``; an unknown key
        is a ValueError, so typos do not pass silently."""
        merged = {**dict(d), **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key; allowed: {', '.join(sorted(known))}")
        return cls(**merged)
