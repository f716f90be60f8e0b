"""The comparison figure: every run's loss curves overlaid, and objective vs the swept value.

Cross-validated runs are drawn by their mean fold objective with the folds' standard deviation
as error bars: against the swept value when one number was swept, else one bar per point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scratchlab.sweeps.summaries import RunSummary, param_value, score, score_std


def comparison_figure(
    runs: Sequence[RunSummary], keys: Sequence[str], objective: str, title: str
) -> Figure:
    numeric = _numeric_values(runs, keys)
    cv = any(score_std(r, objective) is not None for r in runs)
    panels = 2 if numeric is not None or cv else 1
    height = 5 if numeric is not None or not cv else max(5.0, 1.5 + 0.3 * len(runs))
    fig = Figure(figsize=(7.5 * panels, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)
    _curves(axes[0][0], runs)
    if numeric is not None:
        _objective_vs_value(axes[0][1], runs, numeric, keys[0], objective)
    elif cv:
        _points(axes[0][1], runs, objective)
    fig.suptitle(title)
    return fig


def _label(run: RunSummary) -> str:
    return f"{run.name} (diverged)" if run.diverged else run.name


def _curves(ax: Axes, runs: Sequence[RunSummary]) -> None:
    """Train loss solid, validation dashed, one colour per run; a cross where a run diverged."""
    positive = True
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        for key, style in (("loss", "-"), ("val_loss", "--")):
            values = run.curves.get(key, [])
            finite = [(e + 1, v) for e, v in enumerate(values) if math.isfinite(v)]
            positive &= all(v > 0 for _, v in finite)
            label = _label(run) if key == "loss" else None
            ax.plot([e for e, _ in finite], [v for _, v in finite], style, color=color,
                    label=label, marker="." if len(finite) < 4 else None)
        loss = [v for v in run.curves.get("loss", []) if math.isfinite(v)]
        if run.diverged and loss:
            ax.plot(len(loss), loss[-1], "x", color="red", markersize=12, markeredgewidth=2.5)
    if positive:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: train, dashed: validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _objective_vs_value(
    ax: Axes, runs: Sequence[RunSummary], values: list[float], key: str, objective: str
) -> None:
    """Final (or mean fold) objective per swept value, with the folds' standard deviation as
    error bars; diverged runs as red crosses at the top edge."""
    points = [(x, score(r, objective), r) for x, r in zip(values, runs, strict=True)]
    ok = sorted((x, y, score_std(r, objective) or 0.0) for x, y, r in points
                if not r.diverged and math.isfinite(y))
    ax.errorbar([x for x, _, _ in ok], [y for _, y, _ in ok], yerr=[e for _, _, e in ok],
                fmt="o-", capsize=4, label=_what(runs, objective))
    top = max((y for _, y, _ in ok), default=1.0)
    bad = [(x, y if math.isfinite(y) else top) for x, y, r in points if r.diverged]
    if bad:
        ax.plot([x for x, _ in bad], [y for _, y in bad], "x", color="red", markersize=12,
                markeredgewidth=2.5, label="diverged")
    if all(x > 0 for x in values):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(_what(runs, objective))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _points(ax: Axes, runs: Sequence[RunSummary], objective: str) -> None:
    """One row per point: mean fold objective +- std; the lowest mean in another colour."""
    rows = [(i, score(r, objective), score_std(r, objective) or 0.0, r)
            for i, r in enumerate(runs)]
    ok = [(i, y, e) for i, y, e, r in rows if not r.diverged and math.isfinite(y)]
    best = min(ok, key=lambda row: row[1], default=None)
    ax.errorbar([y for _, y, _ in ok], [i for i, _, _ in ok], xerr=[e for _, _, e in ok],
                fmt="o", capsize=3, label=_what(runs, objective))
    if best is not None:
        ax.errorbar([best[1]], [best[0]], xerr=[best[2]], fmt="o", color="C2", capsize=3,
                    label="best (lowest mean)")
    bad = [i for i, _, _, r in rows if r.diverged]
    if bad:
        edge = max((y + e for _, y, e in ok), default=1.0)
        ax.plot([edge] * len(bad), bad, "x", color="red", markersize=10, markeredgewidth=2.5,
                label="diverged")
    ax.set_yticks(range(len(runs)), [_label(r) for r in runs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(_what(runs, objective))
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)


def _what(runs: Sequence[RunSummary], objective: str) -> str:
    folds = {r.params.get("train.cv_folds") for r in runs} - {None, "None"}
    if folds:
        return f"mean {objective} over {'/'.join(sorted(folds))} CV folds (bars: std)"
    return f"final {objective}"


def _numeric_values(runs: Sequence[RunSummary], keys: Sequence[str]) -> list[float] | None:
    """The swept values as floats when exactly one numeric parameter was swept."""
    if len(keys) != 1 or not runs:
        return None
    try:
        return [float(param_value(r.params, keys[0]) or "nan") for r in runs]
    except ValueError:
        return None
