"""Which process owns a run, and whether that process is gone: identity as tags, judged later.

A process killed with SIGKILL (the OOM killer, a pre-empted node, a closed laptop) runs no
cleanup. So a run records its owner when it starts: the host, the pid, the process start time
(clock ticks since boot, from ``/proc/<pid>/stat``: a reused pid has another) and the machine
(kernel boot id and pid namespace: whether a later process can see the owner's pid at all),
plus a heartbeat that the owner refreshes every ``HEARTBEAT_S`` seconds while it lives.
:func:`gone_reason` judges those tags: on the same machine by the pid and its start time,
elsewhere by the heartbeat's age.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

PREFIX = "scratchlab.owner."
HOST, PID, START, MACHINE, HEARTBEAT = (f"{PREFIX}{k}" for k in
                                        ("host", "pid", "start_time", "machine", "heartbeat"))
HEARTBEAT_S = 10  # how often a live owner says so (MLflow runs, Optuna trials)
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


def now_ms() -> int:
    return int(time.time() * 1000)


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run, with a fresh heartbeat."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), START: start_ticks(pid) or "",
            MACHINE: machine(), HEARTBEAT: str(now_ms())}


def gone_reason(tags: dict[str, str], stale_after_s: float = STALE_AFTER_S,
                now: int | None = None) -> str | None:
    """Why the owner named by these tags is gone, or None (alive, or no owner recorded)."""
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
    age_s = ((now or now_ms()) - int(beat)) / 1000
    if age_s > stale_after_s:
        return (f"no heartbeat from process {pid} on {host} for {age_s:.0f} s "
                f"(> {stale_after_s:g} s)")
    return None
