"""A DVC stage stops when ``dvc repro`` is gone, instead of training on as an orphan.

DVC does not pass SIGTERM on to the stage it runs: ``kill <dvc pid>`` (a scheduler's timeout, a
CI cancel) ends DVC at once and leaves the stage process training, its MLflow run RUNNING. On
Linux the kernel can send the stage a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
elsewhere a small daemon thread notices the parent change. Either way the stage gets SIGTERM,
which the entry point turns into KeyboardInterrupt: the run ends KILLED, the process exits 130.

Only DVC stages ask for this: a command started from a shell (``nohup scratchlab tune &``)
must survive the shell.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def stop_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have ``sig`` sent to this process as soon as its parent process exits."""
    parent = os.getppid()
    if not (sys.platform.startswith("linux") and _prctl_pdeathsig(sig)):
        threading.Thread(target=_watch, args=(parent, sig), daemon=True,
                         name="scratchlab-lifeline").start()
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, sig: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), sig)
