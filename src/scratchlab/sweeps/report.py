"""Write a sweep's comparison (figure, CSV/JSON table, best run) and attach it to the parent."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.time import get_current_time_millis

from scratchlab.core.files import atomic_path, write_json_atomic
from scratchlab.pipeline import plots
from scratchlab.sweeps.figures import comparison_figure
from scratchlab.sweeps.summaries import (
    RunSummary,
    best_run,
    children,
    compared_keys,
    parent_run,
    records,
)
from scratchlab.tracking.store import busy_retry

FIGURE = "comparison.png"
TABLE_CSV = "runs.csv"
TABLE_JSON = "runs.json"


@dataclass
class Comparison:
    runs: list[RunSummary]
    keys: list[str]
    rows: list[dict]
    best: RunSummary | None
    objective: str
    refit: str = ""  # a cross-validated sweep's refit: one line naming it and its test scores


def compare(runs: list[RunSummary], keys: list[str], objective: str) -> Comparison:
    return Comparison(runs, keys, records(runs, keys), best_run(runs, objective), objective)


def write_comparison(comparison: Comparison, out_dir: Path, title: str) -> list[Path]:
    """``comparison.png``, ``runs.csv`` and ``runs.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = comparison_figure(comparison.runs, comparison.keys, comparison.objective, title)
    plots.save_figure(figure, out_dir / FIGURE)
    with atomic_path(out_dir / TABLE_CSV) as tmp, open(tmp, "w", newline="") as fh:
        columns = list(comparison.rows[0]) if comparison.rows else ["run_name"]
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(comparison.rows)
    best, objective = comparison.best, comparison.objective
    write_json_atomic(out_dir / TABLE_JSON, {
        "objective": objective,
        "swept": comparison.keys,
        "best": None if best is None else {"run_id": best.run_id, "run_name": best.name,
                                           objective: best.metrics[objective]},
        "runs": [{k: _json_safe(v) for k, v in row.items()} for row in comparison.rows],
    })
    return [out_dir / FIGURE, out_dir / TABLE_CSV, out_dir / TABLE_JSON]


def report_parent(
    parent_run_id: str, out_dir: Path, objective: str = "val_loss", best_as_params: bool = True
) -> Comparison:
    """Collect the children, write the comparison to ``out_dir`` and log it on the parent.

    The best child goes to the parent as tags and ``best_*`` metrics, and also as params when
    ``best_as_params`` (params are write-once, so a resumable study keeps it to tags).
    """
    parent = parent_run(parent_run_id)
    runs = children(parent)
    comparison = compare(runs, compared_keys(parent, runs), objective)
    title = f"{parent.info.run_name}: {len(runs)} runs"
    client = MlflowClient()
    for path in write_comparison(comparison, out_dir, title):
        busy_retry(lambda p=path: client.log_artifact(parent_run_id, str(p), "comparison"),
                   f"log {path.name}")
    now = get_current_time_millis()
    step = len(runs)
    metrics = [
        Metric("n_runs", len(runs), now, step),
        Metric("n_failed", sum(r.status == "FAILED" for r in runs), now, step),
        Metric("n_diverged", sum(r.diverged for r in runs), now, step),
        Metric("n_pruned", sum(r.pruned for r in runs), now, step),
    ]
    tags, params = [], []
    best = comparison.best
    if best is not None:
        metrics.append(Metric(f"best_{objective}", best.metrics[objective], now, step))
        for key in ("val_accuracy", "test_accuracy"):
            if key in best.metrics:
                metrics.append(Metric(f"best_{key}", best.metrics[key], now, step))
        identity = {"best_run_id": best.run_id, "best_run_name": best.name}
        tags = [RunTag(k, v) for k, v in identity.items()]
        if best_as_params:
            params = [Param(k, v) for k, v in {**identity, "objective": objective}.items()]
    busy_retry(lambda: client.log_batch(parent_run_id, metrics=metrics, params=params,
                                        tags=tags), "log sweep summary")
    return comparison


def parent_status(comparison: Comparison) -> str:
    """FAILED only when no child finished (all failed or diverged, or none ran)."""
    return "FINISHED" if any(r.status == "FINISHED" for r in comparison.runs) else "FAILED"


def _json_safe(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value
