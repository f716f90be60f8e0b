"""An MLflow run that always ends: FINISHED, FAILED, or KILLED, never left RUNNING."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import mlflow
from mlflow.entities import RunTag
from mlflow.utils.time import get_current_time_millis

from scratchlab.core.errors import TrackingError
from scratchlab.core.owner import owner_tags
from scratchlab.core.signals import (
    deferred_interrupts,
    interrupt_mark,
    interrupted_since,
    sigterm_as_interrupt,
    stopping,
)
from scratchlab.tracking.http import is_outage
from scratchlab.tracking.liveness import Heartbeat
from scratchlab.tracking.outbox import Outbox, outbox_of
from scratchlab.tracking.store import storage_fault
from scratchlab.tracking.uri import redact

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

    Ctrl-C (and SIGTERM, while the run is live) ends it KILLED, even when a library turned
    the interrupt into its own error (re-raised as KeyboardInterrupt); any other exception FAILED;
    both re-raise so the process still exits non-zero. A SIGKILL leaves no chance to end it:
    the owner tags and the heartbeat let ``tracking.liveness.reap`` end it later.
    """
    owner = owner_tags()  # who runs it, so the run can be ended if this process dies unseen
    with sigterm_as_interrupt():
        mark = interrupt_mark()
        started: list[mlflow.ActiveRun] = []
        try:
            with deferred_interrupts():  # a run that starts is a run that gets ended
                started.append(_start(run_id, experiment_id, run_name, tags, parent_run_id,
                                      owner))
            with Heartbeat(started[0].info.run_id):
                yield started[0]
        except BaseException as exc:
            error = interrupted_since(mark, exc)
            killed = isinstance(error, KeyboardInterrupt)
            if killed:
                stopping()  # a second Ctrl-C must not stop the run from ending KILLED
            if not started:
                raise _start_error(error)  # noqa: B904 - the cause is chained
            fault = None if killed else storage_fault(error, mlflow.get_tracking_uri())
            ended = _end(started[0], "KILLED" if killed else "FAILED", keep_error=True,
                         quiet=fault is not None)
            if fault is not None:  # one line: the store, the cause, what became of the run
                raise _store_refused(started[0].info.run_id, fault, ended) from error
            raise error  # noqa: B904 - interrupted_since chains exc as the cause
        _end(started[0], "FINISHED")


def _start_error(error: BaseException) -> BaseException:
    """What a run that could not start raises: an unreachable server is a TrackingError
    (nothing trained yet, so nothing lost: fail now, as check_store would have)."""
    if isinstance(error, Exception) and not isinstance(error, TrackingError) and is_outage(error):
        failure = TrackingError(f"{mlflow.get_tracking_uri()}: tracking server unreachable "
                                f"while starting the run ({_short(error)})")
        failure.__cause__ = error
        return failure
    return error


def _start(run_id, experiment_id, run_name, tags, parent_run_id, owner) -> mlflow.ActiveRun:
    if run_id is not None:  # before it is RUNNING again, so no reaper sees the old owner
        with deferred_interrupts():
            mlflow.MlflowClient().log_batch(run_id, tags=[RunTag(k, v) for k, v in owner.items()])
    return mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=run_name,
        tags={**dict(tags or {}), **(owner if run_id is None else {})},
        parent_run_id=parent_run_id,
    )


def _end(run: mlflow.ActiveRun, status: str, keep_error: bool = False,
         quiet: bool = False) -> bool:
    """End the run ``status``; whether it could. Through its outbox when it has one (HTTP
    stores): a status the server cannot take is spooled, and TrackingError names the spool,
    unless another error is already on its way out (``keep_error``), which then stays the one
    reported (``quiet``: and says itself what became of the run)."""
    run_id = run.info.run_id
    outbox = outbox_of(run_id)
    try:
        with deferred_interrupts():  # the status is written whole, whenever an interrupt falls
            _send_end(run_id, outbox, status)
    except TrackingError as exc:
        if not keep_error:
            raise
        log.error("%s", exc)
        return False
    except Exception as exc:  # the store went away: say so, but keep the original error visible
        _forget_active_run(run_id)
        if not quiet:
            log.error("could not mark MLflow run %s as %s (%s)", run_id, status, _short(exc))
        return False
    log.info("MLflow run %s ended %s", run_id, status)
    return True


def _store_refused(run_id: str, fault: str, ended: bool) -> TrackingError:
    uri = redact(mlflow.get_tracking_uri())
    fate = ("ended FAILED" if ended else "left RUNNING: `scratchlab reap` ends it once the "
            "store takes writes again")
    return TrackingError(f"{uri}: the MLflow store refused a write ({fault}); run {run_id} "
                         f"{fate}")


def _send_end(run_id: str, outbox: Outbox | None, status: str) -> None:
    if outbox is not None and outbox.backlog:
        _forget_active_run(run_id)  # the status must reach the server after the backlog
        outbox.finish(status, get_current_time_millis())
        return
    try:
        mlflow.end_run(status)
    except Exception as exc:
        if outbox is None or not is_outage(exc):
            raise
        outbox.finish(status, get_current_time_millis())  # end_run left the stack
    else:
        if outbox is not None:
            outbox.close()


def _forget_active_run(run_id: str) -> None:
    """Pop the run off MLflow's active-run stack without telling the server (it is away)."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()
        os.environ.pop("MLFLOW_RUN_ID", None)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]
