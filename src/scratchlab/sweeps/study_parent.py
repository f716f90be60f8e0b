"""A study's MLflow parent run: created once, kept alive by every worker, ended by the last.

The parent is created under the storage lock by the first worker and remembered in the study's
user attributes; a later worker (or a later ``scratchlab tune`` resuming the study) reopens it.
It carries the best trial so far (tags and ``best_*`` metrics: MLflow params are write-once).
When a worker stops while trials still run elsewhere, it leaves the parent RUNNING and hands
its ownership (``core.owner`` tags, which the reaper judges) to a worker that is still working;
the last worker out writes the comparison (figure, table, counts) and ends it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.time import get_current_time_millis
from optuna.trial import FrozenTrial, TrialState

from scratchlab.core.owner import HEARTBEAT, HOST, PID, owner_tags
from scratchlab.sweeps.budget import budget
from scratchlab.sweeps.locks import storage_lock
from scratchlab.sweeps.orphans import end_orphans
from scratchlab.sweeps.parent import SweepInfo, end_parent, start_parent
from scratchlab.sweeps.report import parent_status, report_parent
from scratchlab.sweeps.trial_attrs import DIVERGED, OWNER, PARENT_RUN, RUN_ID, RUN_NAME
from scratchlab.tracking.store import busy_retry
from scratchlab.tracking.uri import redact

log = logging.getLogger("scratchlab")


def open_parent(study: optuna.Study, tracking: Any, keys: list[str], url: str) -> SweepInfo:
    """The study's parent run, RUNNING and owned by this process: reopened when it exists,
    else created and remembered. Called under the storage lock, so concurrent workers create
    it exactly once."""
    client = MlflowClient()
    run_id = study.user_attrs.get(PARENT_RUN)
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:  # e.g. the study now logs to another tracking store
            log.warning("study %s: parent run %s not found (%s); starting a new one",
                        study.study_name, run_id, str(exc).splitlines()[0])
        else:
            busy_retry(lambda: client.update_run(run_id, status="RUNNING"), "reopen parent")
            _own(client, run_id, owner_tags())
            return SweepInfo(run.data.tags["sweep_id"], run_id, run.info.experiment_id, keys)
    info = start_parent(tracking, keys, name=f"optuna {study.study_name}",
                        tags={"entry_point": "optuna", "optuna_study": study.study_name,
                              "optuna_storage": redact(url)})
    study.set_user_attr(PARENT_RUN, info.parent_run_id)
    return info


def _own(client: MlflowClient, run_id: str, owner: dict[str, str]) -> None:
    tags = [RunTag(k, v) for k, v in owner.items()]
    busy_retry(lambda: client.log_batch(run_id, tags=tags), "own parent")


def best_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The complete, non-diverged trial with the lowest finite value (pruned ones are not
    results: their value is the loss at the epoch they were stopped)."""
    candidates = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                  and math.isfinite(t.value) and not t.user_attrs.get(DIVERGED)]
    return min(candidates, key=lambda t: (t.value, t.number), default=None)


def log_best(parent_run_id: str, trials: Sequence[FrozenTrial], objective: str = "val_loss"
             ) -> None:
    """Put the study's best trial so far on the parent run (tags and ``best_*`` metric)."""
    best = best_trial(trials)
    if best is None:
        return
    tags = {"best_trial": str(best.number)}
    for attr, tag in ((RUN_ID, "best_run_id"), (RUN_NAME, "best_run_name")):
        if attr in best.user_attrs:
            tags[tag] = str(best.user_attrs[attr])
    step = budget(trials).done
    metric = Metric(f"best_{objective}", float(best.value), get_current_time_millis(), step)
    client = MlflowClient()
    busy_retry(lambda: client.log_batch(parent_run_id, metrics=[metric],
                                        tags=[RunTag(k, v) for k, v in tags.items()]),
               "log best trial")


def finish(study: optuna.Study, info: SweepInfo, out_dir: Path, status: str, url: str,
           lock_key: str) -> None:
    """End this worker's part. The last worker out (no trial left running, nor queued unless
    this worker was stopped) writes the comparison to ``out_dir`` and the parent and ends the
    parent ``status`` (FINISHED: FAILED if no trial finished); the others leave it RUNNING."""
    trials = study.get_trials(deepcopy=False)
    end_orphans(info.parent_run_id, info.experiment_id, trials)
    left = budget(trials)
    # trials running elsewhere have workers that will end the parent; a queued retry has none
    # yet, so a stopped worker does not wait for it
    if left.running or (status == "FINISHED" and left.waiting):
        log_best(info.parent_run_id, trials)
        _hand_over(info.parent_run_id, trials)
        log.info("study %s: %d trial(s) still running or queued elsewhere; their workers end "
                 "the parent run", study.study_name, left.running + left.waiting)
        return
    with storage_lock(url, lock_key):
        if _reported(info):
            return
        try:
            comparison = report_parent(info.parent_run_id, out_dir, best_as_params=False)
        except Exception:  # no comparison: the parent still ends
            end_parent(info.parent_run_id, "FAILED" if status == "FINISHED" else status)
            raise
        end_parent(info.parent_run_id,
                   parent_status(comparison) if status == "FINISHED" else status)


def _hand_over(parent_run_id: str, trials: Sequence[FrozenTrial]) -> None:
    """Name a worker still running a trial as the parent's owner, so that no reaper takes the
    parent for abandoned once this process is gone (its heartbeat is kept by every worker)."""
    me = (owner_tags()[HOST], owner_tags()[PID])
    others = [t.user_attrs[OWNER] for t in trials if t.state == TrialState.RUNNING
              and isinstance(t.user_attrs.get(OWNER), dict)
              and (t.user_attrs[OWNER].get(HOST), t.user_attrs[OWNER].get(PID)) != me]
    if others:
        _own(MlflowClient(), parent_run_id,
             {k: str(v) for k, v in others[0].items() if k != HEARTBEAT})


def _reported(info: SweepInfo) -> bool:
    """Whether another worker already ended the parent with every child counted."""
    client = MlflowClient()
    parent = client.get_run(info.parent_run_id)
    if parent.info.status == "RUNNING":
        return False
    kids = client.search_runs([info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{info.parent_run_id}'",
                              max_results=10_000)
    return parent.data.metrics.get("n_runs") == len(kids)
