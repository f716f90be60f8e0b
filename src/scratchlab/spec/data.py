"""The ``data.*`` keys every dataset has; each dataset's schema (``scratchlab.data.catalog``)
adds its own."""

from __future__ import annotations

from dataclasses import dataclass

from scratchlab.core.rules import Choice, Maybe, Number, Text, ruled

TASKS = ("classification", "regression")
FRACTION = Number(0, 1, low_open=True, high_open=True)  # a share held out (test, validation)


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The ``data.*`` keys every dataset has."""

    name: str = ruled(Text())
    task: str = ruled(Choice(TASKS), default="classification")
    # Held out for testing; null keeps a dataset's official test split (MNIST).
    test_fraction: float | None = ruled(Maybe(FRACTION), default=0.2)
    # Seeds the test/validation split, apart from train.seed, so runs with different training
    # seeds are compared on the same held-out samples.
    split_seed: int = ruled(Number(0, integer=True), default=0)
