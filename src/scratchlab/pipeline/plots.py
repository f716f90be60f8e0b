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

from scratchlab.core.files import atomic_path

CHAR_IN = 0.075  # width of one tick-label character at matplotlib's default 10 pt, in inches


def save_figure(fig: Figure, path: Path) -> None:
    """Write a PNG atomically (no timestamp in it, so equal figures give equal bytes). The
    figures lay themselves out: one draw, where ``bbox_inches="tight"`` costs two."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """Counts in every cell; margins sized from the labels (long class names slant)."""
    k, longest = len(labels), max((len(str(label)) for label in labels), default=1)
    slant = longest > 3
    cell = 0.5
    left = 0.55 + CHAR_IN * longest
    bottom = 0.6 + (CHAR_IN * 0.7 * longest if slant else 0.0)
    lines = title.splitlines() or [""]
    top, right = 0.15 + 0.22 * len(lines), 1.0  # the colour bar's room
    needed = left + cell * k + right
    width = max(needed, 0.4 + 1.3 * CHAR_IN * max(map(len, lines)))
    height = bottom + cell * k + top
    fig = Figure(figsize=(width, height))
    left += (width - needed) / 2  # a title wider than the matrix: centre the matrix under it
    ax = fig.add_axes((left / width, bottom / height, cell * k / width, cell * k / height))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(k)
    ax.set_xticks(ticks, labels, rotation=45 if slant else 0, ha="right" if slant else "center",
                  rotation_mode="anchor")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    fig.suptitle(title, y=1 - 0.1 / height, va="top")
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
