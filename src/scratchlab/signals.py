"""SIGTERM handled like Ctrl-C, so cleanup code (ending MLflow runs, removing temp files) runs.

``kill``, ``timeout`` and batch schedulers send SIGTERM; Python's default for it is to die on
the spot, which would leave MLflow runs RUNNING.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGTERM inside the block (main thread only: elsewhere Python
    cannot set handlers, and nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
