"""``scratchlab lr-find``: the learning-rate range test of the configured network and optimizer.

The network is built as training would build it (same config, same seed) and the range test
(``scratchlab.nn.range_test``) runs on the training split with the config's batch size and
optimizer; nothing is trained for good (the weights are restored, and this network is not kept).
The result is a suggested lr with the rule that chose it, the loss-vs-lr curve as a figure
(log x axis) and a CSV/JSON, and an MLflow run holding them, the curve as metrics
(``lr_find_lr``, ``lr_find_loss``, ``lr_find_smoothed_loss``, step = mini-batch) and
``suggested_lr``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from scratchlab.config import Config
from scratchlab.core.errors import ConfigError
from scratchlab.core.files import atomic_path, write_json_atomic
from scratchlab.core.numerics import blas_threads
from scratchlab.nn.optimizers import make_optimizer
from scratchlab.nn.range_test import VALLEY, RangeTest, check_range, lr_range_test, suggest
from scratchlab.pipeline.plots import save_figure
from scratchlab.pipeline.record import tracked_run
from scratchlab.pipeline.training import build_configured, preflight
from scratchlab.spec.splits import Splits

FIGURE, TABLE_CSV, SUMMARY = "lr_find.png", "lr_find.csv", "lr_find.json"


@dataclass
class LrFind:
    """The range test, the lr it suggests (None: the loss never fell) and the rule used."""

    test: RangeTest
    suggestion: float | None
    options: dict[str, float] = field(default_factory=dict)
    rule: str = VALLEY

    def summary(self) -> dict[str, Any]:
        return {"suggested_lr": self.suggestion, "rule": self.rule,
                "stop_reason": self.test.stop_reason, "batches": len(self.test.lrs),
                "last_lr": self.test.lrs[-1] if self.test.lrs else None, **self.options}


def lr_find(config: Config, splits: Splits, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            iterations: int = 100) -> LrFind:
    """The range test of the configured network, optimizer and batch size on ``splits.train``,
    from ``start_lr`` to ``end_lr`` over at most ``iterations`` mini-batches."""
    try:
        check_range(start_lr, end_lr, iterations)
    except ValueError as exc:
        raise ConfigError(f"lr-find: {exc}") from None
    preflight(config, splits)
    net, _, rng = build_configured(config, splits)
    optimizer = make_optimizer(config.optimizer.name, **config.optimizer.hyper)
    with blas_threads(config.train.deterministic):
        test = lr_range_test(net, optimizer, splits.train.X, splits.train.Y,
                             batch_size=config.train.batch_size, rng=rng, start_lr=start_lr,
                             end_lr=end_lr, iterations=iterations)
    options = {"start_lr": start_lr, "end_lr": end_lr, "iterations": iterations}
    return LrFind(test, suggest(test, iterations), options)


def lr_find_figure(result: LrFind, heading: str) -> Figure:
    """Batch losses (dots) and the smoothed loss (line) against the lr on a log axis, the
    suggestion marked; the y axis stops short of the blow-up so the descent stays readable."""
    test = result.test
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(test.lrs, test.losses, ".", color="0.7", markersize=4, label="batch loss")
    ax.plot(test.lrs, test.smoothed, "-", color="C0", label="smoothed loss")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="C3", linestyle="--",
                   label=f"suggested lr {result.suggestion:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    if test.smoothed:
        low = min(min(test.losses), min(test.smoothed))
        high = max(test.smoothed[: test.smoothed.index(min(test.smoothed)) + 1])
        ax.set_ylim(low - 0.05 * abs(low), high + 0.5 * (high - low) + 1e-12)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(f"LR range test: {heading}\n({result.rule}; stopped: {test.stop_reason})",
                 fontsize=9)
    return fig


def write_files(result: LrFind, out_dir: Path, heading: str) -> list[Path]:
    """``lr_find.png``, ``lr_find.csv`` (batch, lr, loss, smoothed_loss), ``lr_find.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_figure(lr_find_figure(result, heading), out_dir / FIGURE)
    test = result.test
    with atomic_path(out_dir / TABLE_CSV) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["batch", "lr", "loss", "smoothed_loss"])
        for i, row in enumerate(zip(test.lrs, test.losses, test.smoothed, strict=True), 1):
            writer.writerow([i, *map(repr, row)])
    write_json_atomic(out_dir / SUMMARY, result.summary())
    return [out_dir / FIGURE, out_dir / TABLE_CSV, out_dir / SUMMARY]


def log_lr_find(config: Config, splits: Splits, manifest: Mapping[str, Any], result: LrFind,
                out_dir: Path) -> str:
    """Record a finished test as an MLflow run of its own (tag ``entry_point=lr-find``), its
    files written to ``out_dir``; return the run id."""
    heading = describe_config(config)
    files = write_files(result, out_dir, heading)
    with tracked_run(config, manifest, out_dir, splits=splits, run_name=f"lr-find {heading}",
                     tags={"entry_point": "lr-find"}) as recorder:
        recorder.log_params({"lr_find": result.options})
        test = result.test
        for step, (lr, loss, smoothed) in enumerate(
                zip(test.lrs, test.losses, test.smoothed, strict=True), 1):
            recorder.log_metrics({"lr_find_lr": lr, "lr_find_loss": loss,
                                  "lr_find_smoothed_loss": smoothed}, step, defer=True)
        if result.suggestion is not None:
            recorder.log_metrics({"suggested_lr": result.suggestion}, defer=True)
        recorder.set_tags({"lr_find.rule": result.rule,
                           "lr_find.stop_reason": test.stop_reason})
        recorder.log_artifacts(files, "lr_find")
        return recorder.run_id


def run_lr_find(config: Config, out_dir: Path, **options: Any) -> tuple[LrFind, str]:
    """Prepare the config's data, run the test, record it: the result and its MLflow run id."""
    from scratchlab.pipeline.prepare import prepare_data

    splits, manifest = prepare_data(config)
    result = lr_find(config, splits, **options)
    return result, log_lr_find(config, splits, manifest, result, out_dir)


def describe_config(config: Config) -> str:
    """What the test measured: data, model, optimizer and batch size (the lr is its output)."""
    return (f"{config.data.name} | {config.model.name} | {config.optimizer.name} "
            f"batch {config.train.batch_size}")


def describe(result: LrFind) -> str:
    """The lines the command prints: the suggestion and its rule, or why there is none."""
    test = result.test
    where = (f"{len(test.lrs)} mini-batches from lr {test.lrs[0]:.3g} to {test.lrs[-1]:.3g} "
             f"({test.stop_reason})" if test.lrs else f"no batch recorded ({test.stop_reason})")
    if result.suggestion is None:
        return (f"range test: {where}\nno suggestion: the smoothed loss never fell for 3 "
                "points; widen the range (--start-lr, --end-lr) or add --iterations")
    lr = result.suggestion
    return (f"range test: {where}\nsuggested lr: {lr:.3g} (rule: {result.rule})\n"
            f"train with: optimizer.lr={lr:.2g}")
