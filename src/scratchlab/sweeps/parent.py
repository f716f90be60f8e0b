"""The parent MLflow run of a sweep, and the ``sweep.json`` that hands its id to the jobs.

Launcher workers (joblib's loky processes, SLURM nodes) do not see environment changes made
by the process that started the sweep, but they all see the sweep directory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scratchlab.core.errors import TrackingError
from scratchlab.core.files import write_json_atomic
from scratchlab.core.owner import owner_tags
from scratchlab.core.paths import git_commit
from scratchlab.tracking.store import busy_retry, connect

SWEEP_FILE = "sweep.json"
COMPARISON_DIR = "comparison"  # the parent's figure and tables, in the sweep dir and the run
TAG_SWEEP_ID = "sweep_id"
TAG_ROLE = "sweep_role"
ROLE_REFIT = "refit"  # the best point trained again on all the training data (cross-validation)
TAG_JOB = "job_num"
TAG_KEYS = "sweep_keys"
TAG_PRUNED = "pruned"  # "true" on a trial's run its study's pruner stopped (``sweeps.pruning``)


@dataclass
class SweepInfo:
    """What every job of a sweep needs to file itself under the parent run."""

    sweep_id: str
    parent_run_id: str
    experiment_id: str
    swept_keys: list[str] = field(default_factory=list)


def start_parent(
    tracking: Mapping[str, Any], swept: list[str], name: str, tags: Mapping[str, str]
) -> SweepInfo:
    """Create the parent run (RUNNING) before any job starts, so jobs never race to create it."""
    from mlflow import MlflowClient  # not at import: jobs read sweep.json without MLflow

    experiment_id = connect(tracking["uri"], tracking["experiment"])
    sweep_id = uuid.uuid4().hex[:12]
    run_tags = {
        TAG_SWEEP_ID: sweep_id,
        TAG_ROLE: "parent",
        TAG_KEYS: ",".join(swept),
        "git_commit": git_commit(),
        **tags,
        **owner_tags(),  # ended by the reaper if the sweep's process dies unseen
    }
    client = MlflowClient()
    run = busy_retry(
        lambda: client.create_run(experiment_id, run_name=name, tags=run_tags), "create parent"
    )
    return SweepInfo(sweep_id, run.info.run_id, experiment_id, swept)


def child_tags(info: SweepInfo, job_num: int) -> dict[str, str]:
    return {TAG_SWEEP_ID: info.sweep_id, TAG_ROLE: "child", TAG_JOB: str(job_num)}


def end_parent(run_id: str, status: str) -> None:
    from mlflow import MlflowClient  # not at import: jobs read sweep.json without MLflow

    client = MlflowClient()
    busy_retry(lambda: client.set_terminated(run_id, status), f"end parent {run_id}")


def write_sweep_info(sweep_dir: Path, info: SweepInfo) -> None:
    write_json_atomic(sweep_dir / SWEEP_FILE, asdict(info))


def read_sweep_info(sweep_dir: Path) -> SweepInfo | None:
    """The sweep's parent, or None when no callback started one (e.g. a custom hydra config)."""
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        return SweepInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise TrackingError(f"{path}: not a sweep file written by scratchlab ({exc})") from exc
