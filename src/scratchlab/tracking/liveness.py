"""No run stays RUNNING after its process is gone: heartbeats, and the reaper that ends the rest.

Every run records its owner process as tags when it starts (``scratchlab.core.owner``), and a
daemon :class:`Heartbeat` refreshes the heartbeat tag while the run is live. :func:`reap` ends
every RUNNING run whose owner is gone, FAILED, with tags saying why and when: on the same
machine when the pid is not running or runs another process; elsewhere when the heartbeat is
older than ``stale_after_s``. It costs one query for the experiments and one for their RUNNING
runs. Each job runs it once per store (:func:`reap_once`, called by ``pipeline.record`` when a
job opens its run), and ``scratchlab reap`` on demand. :func:`end_from_outside` is how any part
of scratchlab ends a run whose process cannot (the reaper, a study's orphaned trials, a sweep
that crashed).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from scratchlab.core.errors import ConfigError, TrackingError
from scratchlab.core.owner import HEARTBEAT, HEARTBEAT_S, STALE_AFTER_S, gone_reason, now_ms
from scratchlab.tracking.spool import is_spooled
from scratchlab.tracking.store import busy_retry, check_store, first_line

log = logging.getLogger(__name__)

ENDED_BY, END_REASON, ENDED_AT = (f"scratchlab.{k}" for k in ("ended_by", "end_reason", "ended_at"))


@dataclass
class Reaped:
    run_id: str
    run_name: str
    reason: str


def end_from_outside(client: Any, run_id: str, status: str, by: str, reason: str,
                     end_time: int | None = None) -> None:
    """End someone else's run ``status``, with tags saying who ended it, why and when."""
    from mlflow.entities import RunTag

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tags = [RunTag(ENDED_BY, by), RunTag(END_REASON, reason), RunTag(ENDED_AT, stamp)]
    busy_retry(lambda: client.log_batch(run_id, tags=tags), f"tag run {run_id}")
    busy_retry(lambda: client.set_terminated(run_id, status, end_time=end_time),
               f"end run {run_id}")
    log.warning("MLflow run %s ended %s: %s", run_id, status, reason)


def reap(client: Any, stale_after_s: float = STALE_AFTER_S) -> list[Reaped]:
    """End FAILED every RUNNING run (any experiment) whose owner is gone; return them."""
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    if not experiments:
        return []
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'",
                                 max_results=10_000)
    reaped = []
    now = now_ms()
    for run in running:
        tags = run.data.tags
        reason = gone_reason(tags, stale_after_s, now)
        if reason is None or is_spooled(run.info.run_id):  # its end is waiting in a spool
            continue
        beat = tags.get(HEARTBEAT, "")
        end_from_outside(client, run.info.run_id, "FAILED", "scratchlab reaper", reason,
                         end_time=int(beat) if beat.isdigit() else now)
        reaped.append(Reaped(run.info.run_id, run.info.run_name or "", reason))
    return reaped


def reap_store(uri: str, stale_after_s: float | None = None) -> list[Reaped]:
    """``scratchlab reap``: check the store at ``uri`` is usable, then :func:`reap` it."""
    from mlflow import MlflowClient

    if stale_after_s is not None and not stale_after_s > 0:
        raise ConfigError(f"--stale-after={stale_after_s:g}: must be > 0 seconds")
    check_store(uri)
    _reaped_stores.add(uri)
    try:
        return reap(MlflowClient(tracking_uri=uri), stale_after_s or STALE_AFTER_S)
    except Exception as exc:  # any MLflow/HTTP/SQL failure talking to the store
        raise TrackingError(f"{uri}: cannot reap the MLflow store "
                            f"({' '.join(str(exc).split())[:200]})") from exc


_reaped_stores: set[str] = set()


def reap_once(uri: str, stale_after_s: float = STALE_AFTER_S) -> None:
    """:func:`reap` the store at ``uri`` the first time this process asks; a failure here never
    stops the command that asked (it is logged)."""
    if uri in _reaped_stores:
        return
    _reaped_stores.add(uri)
    from mlflow import MlflowClient

    try:
        reap(MlflowClient(tracking_uri=uri), stale_after_s)
    except Exception as exc:  # the reaper is housekeeping: never the reason a command fails
        log.warning("%s: could not check for abandoned runs (%s)", uri, first_line(exc))


class Heartbeat:
    """A daemon thread refreshing a run's heartbeat tag every ``interval_s`` until stopped.

    Writes that fail (store busy, server down) are skipped: the next beat says the same.
    """

    def __init__(self, run_id: str, interval_s: float = HEARTBEAT_S) -> None:
        self.run_id = run_id
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat-{run_id[:8]}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)  # daemon: a beat stuck on a dead server is left

    def _run(self) -> None:
        from mlflow import MlflowClient

        client = MlflowClient()
        while not self._stop.wait(self.interval_s):
            try:
                client.set_tag(self.run_id, HEARTBEAT, str(now_ms()), synchronous=True)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                log.debug("heartbeat of %s skipped: %s", self.run_id, exc)
