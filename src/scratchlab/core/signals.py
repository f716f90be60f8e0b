"""SIGTERM handled like Ctrl-C, so cleanup code (ending MLflow runs, removing temp files) runs.

``kill``, ``timeout`` and batch schedulers send SIGTERM; Python's default for it is to die on
the spot, which would leave MLflow runs RUNNING. Every interrupt received is counted: a
KeyboardInterrupt raised while a C extension runs can come out as that library's own error
(matplotlib's Agg renderer turns it into ``ValueError: Invalid bounding box``), and
:func:`interrupted_since` lets the code that ends runs and picks exit codes still see an
interrupt.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_received: list[int] = []  # every Ctrl-C/SIGTERM this process took, in order


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_mark() -> int:
    """A mark to pass to :func:`interrupted_since` later."""
    return len(_received)


def interrupted_since(mark: int, exc: BaseException) -> BaseException:
    """``exc``, or a KeyboardInterrupt caused by it when an interrupt arrived after ``mark``
    (a library turned it into its own error)."""
    if isinstance(exc, KeyboardInterrupt) or len(_received) == mark:
        return exc
    interrupt = KeyboardInterrupt(f"signal {_received[mark]}")
    interrupt.__cause__ = exc
    return interrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGTERM, and count it and Ctrl-C, inside the block (main
    thread only: elsewhere Python cannot set handlers, and nothing changes). An ignored
    SIGINT or SIGTERM (``nohup``, a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_interrupts() -> None:
    """Ignore Ctrl-C and SIGTERM from now on (main thread only): for a process that has ended
    its runs after an interrupt and only has to exit."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


_deferring = 0  # depth of nested deferred_interrupts blocks: the outermost one raises


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM until the block ends, then raise KeyboardInterrupt.

    Wrapped around writes to the tracking store (an interrupt landing inside a SQLite commit
    can leave the connection unusable, and then the run could not be marked KILLED) and around
    the code that ends runs after an interrupt, so that the next Ctrl-C of an impatient user
    cannot stop it half-way and leave a run RUNNING. Nested blocks hold them until the
    outermost ends; an ignored signal stays ignored.
    """
    global _deferring
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _deferring:
        _deferring += 1
        try:
            yield
        finally:
            _deferring -= 1
        return
    mark = interrupt_mark()
    previous = {sig: signal.signal(sig, lambda signum, frame: _received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if interrupt_mark() > mark:
            raise KeyboardInterrupt(f"signal {_received[mark]}")
