"""What ``scratchlab compare`` shows: a sweep's (or an experiment's) runs as a table.

For people without a browser: the same comparison the sweep logs on its parent run, read back
from whatever store ``MLFLOW_TRACKING_URI`` (or the project default) points at.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from scratchlab.core.errors import TrackingError
from scratchlab.sweeps.parent import TAG_ROLE
from scratchlab.sweeps.report import Comparison, compare
from scratchlab.sweeps.summaries import children, compared_keys, summarize, varying_params
from scratchlab.tracking.store import connect

SHOWN_METRICS = ("val_loss", "val_loss_std", "val_accuracy", "val_accuracy_std", "test_accuracy")
MAX_RUNS = 200


def last_sweep(experiment_id: str) -> str:
    """The most recently started sweep parent run of the experiment."""
    found = mlflow.search_runs(
        experiment_ids=[experiment_id], filter_string=f"tags.{TAG_ROLE} = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
    )
    if not found:
        raise TrackingError(f"experiment {experiment_id}: no sweep parent run found")
    return found[0].info.run_id


def gather_runs(experiment: str, parent: str | None, latest: bool, objective: str) -> Comparison:
    """The parent's children, or every run that is not a sweep parent in the experiment."""
    experiment_id = connect(None, experiment)
    if latest:
        parent = last_sweep(experiment_id)
    if parent is not None:
        try:
            run = mlflow.MlflowClient().get_run(parent)
        except MlflowException as exc:
            raise TrackingError(f"--parent {parent}: no such run in the store") from exc
        runs = children(run)
        comparison = compare(runs, compared_keys(run, runs), objective)
        comparison.refit = refit_line(run)
        return comparison
    found = mlflow.search_runs(
        experiment_ids=[experiment_id], filter_string=f"tags.{TAG_ROLE} != 'parent'",
        order_by=["attributes.start_time ASC"], max_results=MAX_RUNS, output_format="list",
    )
    found += mlflow.search_runs(  # runs from before sweeps existed have no role tag at all
        experiment_ids=[experiment_id], filter_string=f"tags.{TAG_ROLE} IS NULL",
        order_by=["attributes.start_time ASC"], max_results=MAX_RUNS, output_format="list",
    )
    runs = summarize(found)
    return compare(runs, varying_params(runs), objective)


def refit_line(parent: Run) -> str:
    """Where a cross-validated sweep's best point went: its refit run and test scores."""
    refit = parent.data.tags.get("refit_run_id")
    if not refit:
        return ""
    tested = ", ".join(f"{k.removeprefix('refit_')} {v:.4f}"
                       for k, v in sorted(parent.data.metrics.items()) if k.startswith("refit_"))
    return (f"refit of the best point on all the training data: run {refit[:8]}, tested once: "
            f"{tested}")


def table_text(comparison: Comparison) -> str:
    """Name, status, swept params and the headline metrics; the best run starred."""
    if not comparison.rows:
        return "no runs"
    frame = pd.DataFrame(comparison.rows)
    best = comparison.best.run_id if comparison.best else None
    frame.insert(0, "", ["*" if r == best else "" for r in frame["run_id"]])
    frame["run_id"] = frame["run_id"].str[:8]
    pruned = sum(r.pruned for r in comparison.runs)
    columns = ["", "run_name", "run_id", "status", "diverged", *(["pruned"] if pruned else []),
               *comparison.keys, *(m for m in SHOWN_METRICS if m in frame)]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        text = frame[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    notes = [f"{pruned} of {len(comparison.runs)} runs pruned (stopped early by the study's "
             "pruner; not candidates for best)"] if pruned else []
    return "\n".join([text, *notes, *([comparison.refit] if comparison.refit else [])])
