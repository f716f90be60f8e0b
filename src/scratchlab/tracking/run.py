"""An MLflow run that always ends: FINISHED, FAILED, or KILLED, never left RUNNING."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import mlflow
from mlflow.entities import RunTag

from scratchlab.signals import deferred_interrupts, sigterm_as_interrupt
from scratchlab.tracking.liveness import Heartbeat, owner_tags

log = logging.getLogger(__name__)

@contextlib.contextmanager
def ended_run(
    *,
    experiment_id: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume ``run_id``) and end the run with the status the block earned.

    Ctrl-C (and SIGTERM, while the run is live) ends it KILLED, any other exception FAILED;
    both re-raise so the process still exits non-zero. A SIGKILL leaves no chance to end it:
    the owner tags and the heartbeat let ``liveness.reap`` end it later.
    """
    owner = owner_tags()  # who runs it, so the run can be ended if this process dies unseen
    with sigterm_as_interrupt():
        if run_id is not None:  # before it is RUNNING again, so no reaper sees the old owner
            with deferred_interrupts():
                mlflow.MlflowClient().log_batch(run_id, tags=[RunTag(k, v)
                                                              for k, v in owner.items()])
        run = mlflow.start_run(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=run_name,
            tags={**dict(tags or {}), **(owner if run_id is None else {})},
            parent_run_id=parent_run_id,
        )
        try:
            with Heartbeat(run.info.run_id):
                yield run
        except KeyboardInterrupt:
            _end(run, "KILLED")
            raise
        except BaseException:
            _end(run, "FAILED")
            raise
        _end(run, "FINISHED")


def _end(run: mlflow.ActiveRun, status: str) -> None:
    try:
        with deferred_interrupts():
            mlflow.end_run(status)
    except Exception:  # the store went away: say so, but keep the original error visible
        log.exception("could not mark MLflow run %s as %s", run.info.run_id, status)
    else:
        log.info("MLflow run %s ended %s", run.info.run_id, status)
