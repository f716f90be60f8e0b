"""The training knobs the engine's loop and callbacks take, with their rules."""

from __future__ import annotations

from dataclasses import dataclass

from scratchlab.core.rules import Choice, Flag, Number, ruled

EPOCHS = Number(1, integer=True)
BATCH_SIZE = Number(1, integer=True)
MONITORS = ("loss", "val_loss", "accuracy", "val_accuracy")


@dataclass(frozen=True, kw_only=True)
class EarlyStoppingSpec:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; ``restore_best`` puts the best epoch's weights back."""

    monitor: str = ruled(Choice(MONITORS), default="val_loss")
    patience: int = ruled(Number(1, integer=True), default=5)
    min_delta: float = ruled(Number(0), default=0.0)
    restore_best: bool = ruled(Flag(), default=True)


@dataclass(frozen=True, kw_only=True)
class DivergenceSpec:
    """What a blow-up is and how long it must last before training stops as diverged: every
    epoch's loss above ``factor`` x the larger of the untrained and the chance loss, for
    ``patience`` epochs and at least ``updates`` optimizer steps, the validation loss making
    no progress meanwhile (``nn.callbacks.DivergenceGuard``)."""

    factor: float = ruled(Number(1), default=1.25)
    patience: int = ruled(Number(1, integer=True), default=3)
    updates: int = ruled(Number(1, integer=True), default=100)
