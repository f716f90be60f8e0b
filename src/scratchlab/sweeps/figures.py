"""The comparison figure: every run's loss curves overlaid, and objective vs the swept value.

A cross-validated sweep has no per-epoch curves (each point trains once per fold); it shows
each point's mean objective with its standard deviation over the folds as error bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scratchlab.sweeps.summaries import RunSummary, param_value


def comparison_figure(
    runs: Sequence[RunSummary], keys: Sequence[str], objective: str, title: str
) -> Figure:
    numeric = _numeric_values(runs, keys)
    cv = any(f"{objective}_std" in r.metrics for r in runs)
    draw = [] if cv else [_curves]
    if numeric is not None:
        draw.append(lambda ax, runs: _objective_vs_value(ax, runs, numeric, keys[0], objective))
    elif cv:
        draw.append(lambda ax, runs: _objective_per_point(ax, runs, objective))
    fig = Figure(figsize=(7.5 * len(draw), 6.5 if cv and numeric is None else 5))
    for ax, panel in zip(fig.subplots(1, len(draw), squeeze=False)[0], draw, strict=True):
        panel(ax, runs)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _label(run: RunSummary) -> str:
    return f"{run.name} (diverged)" if run.diverged else run.name


PRUNED_COLOR = "0.6"


def _curves(ax: Axes, runs: Sequence[RunSummary]) -> None:
    """Train loss solid, validation dashed, one colour per run; a pruned run in grey, ending in
    a circle where its study's pruner stopped it; a diverged run leaving the plot at the top,
    with a cross on the edge, so that its blow-up does not flatten the other curves."""
    positive = all(v > 0 for r in runs for c in r.curves.values() for v in c if math.isfinite(v))
    kept = [v for r in runs if not r.diverged for c in r.curves.values() for v in c
            if math.isfinite(v)]
    ceiling = None
    if any(r.diverged for r in runs) and kept and max(kept) > 0:
        ceiling = max(kept) * (3.0 if positive else 1.2)
    colours = 0
    for run in runs:
        color, width = PRUNED_COLOR, 0.9
        if not run.pruned:
            color, width, colours = f"C{colours % 10}", 1.5, colours + 1
        for key, style in (("loss", "-"), ("val_loss", "--")):
            values = run.curves.get(key, [])
            finite = [(e + 1, v) for e, v in enumerate(values) if math.isfinite(v)]
            label = _label(run) if key == "loss" and not run.pruned else None
            ax.plot([e for e, _ in finite], [v for _, v in finite], style, color=color,
                    linewidth=width, label=label, marker="." if len(finite) < 4 else None)
            if run.pruned and finite and key == "val_loss":
                ax.plot(*finite[-1], "o", color=PRUNED_COLOR, markerfacecolor="none")
        loss = [v for v in run.curves.get("loss", []) if math.isfinite(v)]
        if run.diverged and loss:
            y = loss[-1] if ceiling is None else min(loss[-1], ceiling)
            ax.plot(len(loss), y, "x", color="red", markersize=12, markeredgewidth=2.5,
                    clip_on=False)
    pruned = sum(r.pruned for r in runs)
    if pruned:  # one legend entry for all of them
        ax.plot([], [], "--o", color=PRUNED_COLOR, markerfacecolor="none",
                label=f"pruned ({pruned}): stopped where the circle is")
    if positive:
        ax.set_yscale("log")
    if ceiling is not None:
        ax.set_ylim(top=ceiling)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: train, dashed: validation)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", ncol=2 if colours > 12 else 1)


def _objective_vs_value(
    ax: Axes, runs: Sequence[RunSummary], values: list[float], key: str, objective: str
) -> None:
    """Final objective per swept value; diverged runs as red crosses at the top edge."""
    points = [(x, r.metrics.get(objective, math.nan), r) for x, r in zip(values, runs,
                                                                         strict=True)]
    ok = sorted((x, y, r.metrics.get(f"{objective}_std", 0.0))
                for x, y, r in points if not r.diverged and not r.pruned and math.isfinite(y))
    ax.errorbar([x for x, _, _ in ok], [y for _, y, _ in ok], yerr=[e for _, _, e in ok],
                fmt="o-", capsize=4, label=f"final {objective}" + _spread(runs, objective))
    stopped = [(x, y) for x, y, r in points if r.pruned and math.isfinite(y)]
    if stopped:
        ax.plot([x for x, _ in stopped], [y for _, y in stopped], "o", color=PRUNED_COLOR,
                markerfacecolor="none", label=f"pruned ({objective} when stopped)")
    top = max((y for _, y, _ in ok), default=1.0)
    top = max([top, *(y for _, y in stopped)])
    edge = top * 1.1 if top > 0 else top + 1.0
    bad = [x for x, _, r in points if r.diverged]
    if bad:
        ax.plot(bad, [edge] * len(bad), "x", color="red", markersize=12, markeredgewidth=2.5,
                label="diverged (off the scale)", clip_on=False)
        ax.set_ylim(top=edge)
    if all(x > 0 for x in values):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"final {objective}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _spread(runs: Sequence[RunSummary], objective: str) -> str:
    return " (mean ± std over folds)" if any(f"{objective}_std" in r.metrics for r in runs) else ""


def _objective_per_point(ax: Axes, runs: Sequence[RunSummary], objective: str) -> None:
    """One error bar per sweep point (several swept keys): mean ± std of the folds."""
    shown = [r for r in runs
             if not r.diverged and math.isfinite(r.metrics.get(objective, math.nan))]
    ax.errorbar(range(len(shown)), [r.metrics[objective] for r in shown],
                yerr=[r.metrics.get(f"{objective}_std", 0.0) for r in shown], fmt="o", capsize=4)
    if shown:
        best = min(range(len(shown)), key=lambda i: shown[i].metrics[objective])
        ax.plot(best, shown[best].metrics[objective], "*", color="gold", markersize=16,
                markeredgecolor="black", label="best (refit on all training data)")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(shown)), [r.name for r in shown], rotation=60, ha="right",
                  fontsize=7)
    ax.set_ylabel(f"{objective} (mean ± std over folds)")
    ax.grid(alpha=0.3, axis="y")


def _numeric_values(runs: Sequence[RunSummary], keys: Sequence[str]) -> list[float] | None:
    """The swept values as floats when exactly one numeric parameter was swept."""
    if len(keys) != 1 or not runs:
        return None
    try:
        return [float(param_value(r.params, keys[0]) or "nan") for r in runs]
    except ValueError:
        return None
