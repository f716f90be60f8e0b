"""Figures written to reports/ and logged to MLflow.

Built as bare ``matplotlib.figure.Figure`` objects (rendered by Agg when saved), not through
pyplot: no global figure registry to leak into across the jobs of a sweep, no GUI backend to
select, and pyplot's import is not paid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scratchlab.io import atomic_path


def save_figure(fig: Figure, path: Path) -> None:
    """Write a PNG atomically (no timestamp in it, so equal figures give equal bytes)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    fig = Figure(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    return fig


def history_figure(history: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Loss (and accuracy, if present) per epoch, train vs validation."""
    panels = [k for k in ("loss", "accuracy") if history.get(k)]
    fig = Figure(figsize=(5.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            values = history.get(name) or []
            ax.plot(range(1, len(values) + 1), values, style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return fig


def regression_figure(actual: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.scatter(actual, predicted, s=8, alpha=0.6)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    return fig
