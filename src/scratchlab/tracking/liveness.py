"""No run stays RUNNING after its process is gone: owners, heartbeats and the reaper.

A process killed with SIGKILL (the OOM killer, a pre-empted node, a closed laptop) runs no
cleanup, so its MLflow run would say RUNNING forever. Every run therefore records its owner
as tags when it starts: the host, the pid, the process start time (clock ticks since boot,
from ``/proc/<pid>/stat``: a reused pid has another) and the machine (kernel boot id and pid
namespace: whether this process can see the owner's pid at all), plus a heartbeat tag that a
daemon thread refreshes every ``HEARTBEAT_S`` seconds while the run is live.

:func:`reap` ends every RUNNING run whose owner is gone, FAILED, with tags saying why and
when: on the same machine when the pid is not running or runs another process (start time
differs); elsewhere when the heartbeat is older than ``stale_after_s``. It costs one query
for the experiments and one for their RUNNING runs. The store opens it (``store.connect``,
once per process and store), and ``scratchlab reap`` runs it on demand.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "scratchlab.owner."
HOST, PID, START, MACHINE, HEARTBEAT = (f"{PREFIX}{k}" for k in
                                        ("host", "pid", "start_time", "machine", "heartbeat"))
ENDED_BY, END_REASON, ENDED_AT = (f"scratchlab.{k}" for k in ("ended_by", "end_reason", "ended_at"))
HEARTBEAT_S = 10.0
STALE_AFTER_S = 600.0  # a run on another machine is gone after 10 min without a heartbeat


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces or ")"
    return fields[19] if fields[0] != "Z" else None  # a zombie has finished


def machine() -> str:
    """Whose pids this process sees: the kernel's boot id and the pid namespace."""
    boot = _read("/proc/sys/kernel/random/boot_id") or "unknown-boot"
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "unknown-ns"
    return f"{boot}/{namespace}"


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run, with a fresh heartbeat."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), START: start_ticks(pid) or "",
            MACHINE: machine(), HEARTBEAT: str(_now_ms())}


def _now_ms() -> int:
    return int(time.time() * 1000)


def gone_reason(tags: dict[str, str], stale_after_s: float = STALE_AFTER_S,
                now_ms: int | None = None) -> str | None:
    """Why the owner of a run with these tags is gone, or None (alive, or unknown owner)."""
    if PID not in tags:
        return None  # not started by scratchlab: nothing to judge by
    pid, host = tags[PID], tags.get(HOST, "?")
    if tags.get(MACHINE) == machine() and pid.isdigit():
        ticks = start_ticks(int(pid))
        if ticks is None:
            return f"owner process {pid} on {host} is not running"
        if ticks != tags.get(START):
            return f"owner process {pid} on {host} is not running (pid reused by another process)"
        return None
    beat = tags.get(HEARTBEAT, "")
    if not beat.isdigit():
        return None
    age_s = ((now_ms or _now_ms()) - int(beat)) / 1000
    if age_s > stale_after_s:
        return (f"no heartbeat from process {pid} on {host} for {age_s:.0f} s "
                f"(> {stale_after_s:g} s)")
    return None


@dataclass
class Reaped:
    run_id: str
    run_name: str
    reason: str


def reap(client, stale_after_s: float = STALE_AFTER_S) -> list[Reaped]:
    """End FAILED every RUNNING run (any experiment) whose owner is gone; return them."""
    from mlflow.entities import RunTag

    from scratchlab.tracking.spool import is_spooled

    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    if not experiments:
        return []
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'",
                                 max_results=10_000)
    reaped = []
    now = _now_ms()
    for run in running:
        tags = run.data.tags
        reason = gone_reason(tags, stale_after_s, now)
        if reason is None or is_spooled(run.info.run_id):  # its end is waiting in a spool
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        client.log_batch(run.info.run_id, tags=[
            RunTag(ENDED_BY, "scratchlab reaper"), RunTag(END_REASON, reason),
            RunTag(ENDED_AT, stamp)])
        beat = tags.get(HEARTBEAT, "")
        client.set_terminated(run.info.run_id, "FAILED",
                              end_time=int(beat) if beat.isdigit() else now)
        log.warning("MLflow run %s ended FAILED: %s", run.info.run_id, reason)
        reaped.append(Reaped(run.info.run_id, run.info.run_name or "", reason))
    return reaped


def reap_store(uri: str, stale_after_s: float | None = None) -> list[Reaped]:
    """``scratchlab reap``: check the store at ``uri`` is usable, then :func:`reap` it."""
    from mlflow import MlflowClient

    from scratchlab.errors import ConfigError, TrackingError
    from scratchlab.tracking.store import check_store

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
    """:func:`reap` the store at ``uri`` the first time this process opens it; a failure
    here never stops the command that opened the store (it is logged)."""
    if uri in _reaped_stores:
        return
    _reaped_stores.add(uri)
    from mlflow import MlflowClient

    try:
        reap(MlflowClient(tracking_uri=uri), stale_after_s)
    except Exception as exc:  # the reaper is housekeeping: never the reason a command fails
        log.warning("%s: could not check for abandoned runs (%s)", uri,
                    " ".join(str(exc).split())[:200])


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
                client.set_tag(self.run_id, HEARTBEAT, str(_now_ms()), synchronous=True)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                log.debug("heartbeat of %s skipped: %s", self.run_id, exc)
