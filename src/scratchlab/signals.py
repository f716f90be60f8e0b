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


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM until the block ends, then raise KeyboardInterrupt.

    Wrapped around writes to the tracking store: an interrupt landing inside a SQLite commit
    can leave the connection unusable, and then the run could not be marked KILLED.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt(f"signal {received[0]}")
