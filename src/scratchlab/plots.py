"""Figures written to reports/ and logged to MLflow (rendered headless with Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from scratchlab.io import atomic_path  # noqa: E402


def save_figure(fig: Figure, path: Path) -> None:
    """Write a PNG atomically and release the figure."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
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
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
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
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(actual, predicted, s=8, alpha=0.6)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    return fig
