"""The MLflow runs of trials whose workers died, made to say so.

A worker killed mid-trial (SIGKILL, a lost node) leaves its trial's child run RUNNING; Optuna
fails the trial when its heartbeats stop, and whichever worker sees it next ends the run
through ``tracking.liveness.end_from_outside``, the one way scratchlab ends a run its own
process cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from scratchlab.sweeps.parent import TAG_JOB
from scratchlab.tracking.liveness import end_from_outside
from scratchlab.tracking.store import busy_retry

log = logging.getLogger("scratchlab")

ENDED_BY = "scratchlab tune"
TRIAL_FAILED_TAG = "trial_failed"


def end_orphans(parent_run_id: str, experiment_id: str, trials: Sequence[FrozenTrial]) -> int:
    """Make the child runs of dead workers say so; returns how many were changed.

    - RUNNING while its trial is over (failed by the heartbeat check, say): the worker died
      mid-trial and nobody else will end the run: ended FAILED, with the reason.
    - FINISHED while its trial FAILED: the worker died after the run ended but before Optuna
      recorded the result, so the trial was failed (and maybe retried): tag ``trial_failed``,
      so the run is not mistaken for the trial's result.
    """
    from mlflow import MlflowClient

    state = {t.number: t.state for t in trials}
    client = MlflowClient()
    kids = busy_retry(lambda: client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=10_000), "find orphaned trial runs")
    changed = 0
    for run in kids:
        job = run.data.tags.get(TAG_JOB, "")
        trial_state = state.get(int(job)) if job.isdigit() else None
        if trial_state is None or not trial_state.is_finished():
            continue
        run_id, number, status = run.info.run_id, int(job), run.info.status
        if status == "RUNNING":
            end_from_outside(client, run_id, "FAILED", ENDED_BY,
                             f"Optuna trial {number} is {trial_state.name} while this run was "
                             "still RUNNING: its worker died mid-trial")
        elif (status == "FINISHED" and trial_state == TrialState.FAIL
              and TRIAL_FAILED_TAG not in run.data.tags):
            reason = (f"scratchlab tune: the worker died after this run ended, before Optuna "
                      f"recorded trial {number}'s result; the trial is FAIL")
            busy_retry(lambda r=run_id, why=reason: client.set_tag(r, TRIAL_FAILED_TAG, why),
                       "tag orphaned run")
            log.warning("MLflow run %s finished but trial %d failed: its worker died", run_id,
                        number)
        else:
            continue
        changed += 1
    return changed
