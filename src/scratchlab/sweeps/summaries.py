"""Read a sweep's children back from MLflow: params, status, final metrics and loss curves."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run

from scratchlab.sweeps.parent import ROLE_REFIT, TAG_JOB, TAG_KEYS, TAG_ROLE

CURVES = ("loss", "val_loss")
METRICS = ("loss", "val_loss", "val_loss_std", "accuracy", "val_accuracy", "val_accuracy_std",
           "test_loss", "test_accuracy", "test_macro_f1")


@dataclass
class RunSummary:
    """One run as the comparison table and figure show it."""

    run_id: str
    name: str
    status: str
    diverged: bool
    job_num: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)


def parent_run(run_id: str) -> Run:
    return MlflowClient().get_run(run_id)


def children(parent: Run, with_curves: bool = True) -> list[RunSummary]:
    """The parent's child runs (the sweep's points, not its refit), in job order."""
    runs = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
        max_results=10_000,
    )
    runs = [run for run in runs if run.data.tags.get(TAG_ROLE) != ROLE_REFIT]
    return sorted(summarize(runs, with_curves), key=lambda r: (r.job_num is None, r.job_num or 0))


def summarize(runs: Iterable[Run], with_curves: bool = True) -> list[RunSummary]:
    client = MlflowClient()
    out = []
    for run in runs:
        tags = run.data.tags
        job = tags.get(TAG_JOB)
        curves = {}
        if with_curves:
            for key in CURVES:
                history = client.get_metric_history(run.info.run_id, key)
                curves[key] = [m.value for m in sorted(history, key=lambda m: m.step)]
        out.append(RunSummary(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id[:8],
            status=run.info.status,
            diverged=tags.get("diverged") == "true",
            job_num=int(job) if job is not None and job.isdigit() else None,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            curves=curves,
        ))
    return out


def compared_keys(parent: Run, runs: Sequence[RunSummary]) -> list[str]:
    """The keys the parent says were swept, else the params that differ between runs."""
    declared = [k for k in parent.data.tags.get(TAG_KEYS, "").split(",") if k]
    return declared or varying_params(runs)


def varying_params(runs: Sequence[RunSummary]) -> list[str]:
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def best_run(runs: Sequence[RunSummary], objective: str) -> RunSummary | None:
    """The finished, non-diverged run with the lowest finite ``objective``."""
    candidates = [
        r for r in runs
        if r.status == "FINISHED" and not r.diverged
        and math.isfinite(r.metrics.get(objective, math.nan))
    ]
    return min(candidates, key=lambda r: r.metrics[objective], default=None)


def records(runs: Sequence[RunSummary], keys: Sequence[str]) -> list[dict]:
    """Table rows: identity, status, the given params, and the final metrics any run has."""
    metric_keys = [m for m in METRICS if any(m in r.metrics for r in runs)]
    return [
        {
            "run_name": r.name,
            "run_id": r.run_id,
            "job_num": r.job_num,
            "status": r.status,
            "diverged": r.diverged,
            **{k: param_value(r.params, k) for k in keys},
            **{m: r.metrics.get(m) for m in metric_keys},
        }
        for r in runs
    ]


def param_value(params: dict[str, str], key: str) -> str | None:
    """A swept group (``optimizer``, ``optimizer/schedule``) is recorded as its name param
    (``optimizer.name``, ``optimizer.schedule.name``)."""
    return params.get(key, params.get(f"{key.replace('/', '.')}.name"))
