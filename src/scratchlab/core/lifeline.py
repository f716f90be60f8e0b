"""A DVC stage stops when ``dvc repro`` is gone, instead of training on as an orphan.

DVC does not pass SIGTERM on to the stage it runs: ``kill <dvc pid>`` (a scheduler's timeout, a
CI cancel) ends DVC at once and leaves the stage process training, its MLflow run RUNNING. DVC
starts a stage as ``$SHELL -c <cmd>``: bash and zsh exec the command, so DVC is the stage's
parent, but dash (Debian's ``/bin/sh``, what DVC uses when ``SHELL`` is unset: cron, CI,
containers) forks it, and then the shell outlives DVC. So the process watched is the parent,
or the parent's parent when the parent is such a ``-c`` shell. On Linux the kernel signals a
watched parent's death (``prctl(PR_SET_PDEATHSIG)``); otherwise a daemon thread waits for the
watched process to exit. Either way the stage gets SIGTERM, which the entry point turns into
KeyboardInterrupt: the run ends KILLED, the process exits 130.

Only DVC stages ask for this: a command started from a shell (``nohup scratchlab tune &``)
must survive the shell.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time

import psutil

PR_SET_PDEATHSIG = 1
POLL_S = 1.0
SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish"})


def stop_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have ``sig`` sent to this process as soon as the process that started it exits."""
    parent = psutil.Process().parent()
    watched = None if parent is None else _starter(parent)
    if watched is None:  # the process that started this one is already gone
        os.kill(os.getpid(), sig)
        return
    if watched.pid == parent.pid and sys.platform.startswith("linux") and _prctl_pdeathsig(sig):
        if os.getppid() != parent.pid:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)
        return
    threading.Thread(target=_signal_when_gone, args=(watched, sig), daemon=True,
                     name="scratchlab-lifeline").start()


def _starter(parent: psutil.Process) -> psutil.Process | None:
    """The process that asked for this one: ``parent``, or its parent if ``parent`` is a
    ``<shell> -c`` that forked instead of exec'ing (None if that one is already gone)."""
    try:
        if parent.name() in SHELLS and "-c" in parent.cmdline()[1:]:
            return parent.parent()
    except psutil.Error:
        return None
    return parent


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _signal_when_gone(watched: psutil.Process, sig: int) -> None:
    _wait_gone(watched)
    os.kill(os.getpid(), sig)


def _wait_gone(proc: psutil.Process) -> None:
    """Block until ``proc`` has exited (a zombie counts): on a pidfd where the OS has them,
    else by polling, which psutil guards against a reused pid."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            if proc.is_running():  # the pidfd is of the same process, not a reused pid
                select.select([fd], [], [])
            return
        finally:
            os.close(fd)
    while True:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(POLL_S)
