"""Ctrl-C and SIGTERM as one KeyboardInterrupt, so the code ending MLflow runs always finishes.

``kill``, ``timeout`` and batch schedulers send SIGTERM; Python's default for it is to die on the
spot, which would leave MLflow runs RUNNING. Inside :func:`sigterm_as_interrupt` both signals
raise KeyboardInterrupt, under four rules:

- **One interrupt is enough.** Once the code handling it says so (:func:`stopping`), later
  interrupts are counted and logged, not raised: pressing Ctrl-C again, or a scheduler's second
  SIGTERM, cannot cut short the code that ends the runs as KILLED.
- **An interrupt is not lost.** Python runs a signal handler between any two bytecodes, also
  inside a garbage-collector callback or a ``__del__``, where a raised exception is dropped
  (``sys.unraisablehook``: "Exception ignored in ..."). A KeyboardInterrupt dropped that way is
  raised again, by sending the signal again, until it lands where it can propagate.
- **Writes are not torn.** :func:`deferred_interrupts` holds interrupts while a tracking store
  is written (an interrupt inside a SQLite commit can leave the connection unusable).
- **An ignored signal stays ignored.** A background job of a script (``scratchlab tune ... &``)
  starts with SIGINT ignored, and a launcher may start a process with SIGTERM ignored: neither
  is ever turned into an interrupt.

Every interrupt received is counted: a KeyboardInterrupt raised while a C extension runs can
come out as that library's own error (matplotlib's Agg renderer turns it into ``ValueError:
Invalid bounding box``), and :func:`interrupted_since` lets the code that ends runs and picks
exit codes still see an interrupt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
RESEND_S = 0.05  # a dropped interrupt is sent again this much later

_received: list[int] = []  # every Ctrl-C/SIGTERM this process took, in order
_scopes = 0  # nesting depth of sigterm_as_interrupt
_stopping = False  # an interrupt is being handled: later ones are counted, not raised


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    if _stopping:
        log.warning("signal %d: already stopping; ending the runs in progress as KILLED "
                    "(SIGKILL would leave them RUNNING)", signum)
        return
    raise KeyboardInterrupt(f"signal {signum}")


def _dropped(unraisable: object, previous: Callable[[object], None]) -> None:
    """``sys.unraisablehook`` inside :func:`sigterm_as_interrupt`: an interrupt raised where
    Python cannot propagate it is sent again; anything else goes to the previous hook."""
    if (getattr(unraisable, "exc_type", None) is KeyboardInterrupt and _received
            and not _stopping):
        log.debug("interrupt dropped in %r; sent again", getattr(unraisable, "object", None))
        # not from here: the handler would run inside this hook, and be dropped for good
        resend = threading.Timer(RESEND_S, os.kill, (os.getpid(), _received[-1]))
        resend.daemon = True
        resend.start()
        return
    previous(unraisable)


def stopping() -> None:
    """Say that this process handles an interrupt: from now on (until the outermost
    :func:`sigterm_as_interrupt` ends) further interrupts are counted, not raised. Called where
    a KeyboardInterrupt is caught to end runs."""
    global _stopping
    if _scopes:
        _stopping = True


def interrupted() -> bool:
    """Whether this process has received an interrupt."""
    return bool(_received)


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


def _ignored(sig: int) -> bool:
    return signal.getsignal(sig) is signal.SIG_IGN


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGTERM and Ctrl-C inside the block, under the module's rules
    (main thread only: elsewhere Python cannot set handlers, and nothing changes). A signal the
    process started with ignored stays ignored, and Ctrl-C keeps any handler other than
    Python's default (a notebook kernel's)."""
    global _scopes, _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    if not _ignored(signal.SIGTERM):
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    hook = sys.unraisablehook
    if not _scopes:
        sys.unraisablehook = lambda unraisable: _dropped(unraisable, hook)
    _scopes += 1
    try:
        yield
    finally:
        _scopes -= 1
        if not _scopes:
            _stopping = False
            sys.unraisablehook = hook
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _interrupt:  # not changed inside (ignore_interrupts)
                signal.signal(sig, handler)


def ignore_interrupts() -> None:
    """Ignore Ctrl-C and SIGTERM from now on: for a process that is exiting after an
    interrupt, so a late one cannot kill it halfway through its exit."""
    if threading.current_thread() is threading.main_thread():
        for sig in INTERRUPTS:
            signal.signal(sig, signal.SIG_IGN)


_deferring = 0  # depth of nested deferred_interrupts blocks: the outermost one raises


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM until the block ends, then raise KeyboardInterrupt (unless the
    process is already :func:`stopping`). Ignored signals stay ignored.

    Wrapped around writes to the tracking store and the study (an interrupt landing inside a
    SQLite commit can leave the connection unusable, and then the run could not be marked
    KILLED; a trial asked for and not yet recorded as ours would be left RUNNING) and around
    the code that ends runs after an interrupt. Nested blocks hold interrupts until the
    outermost ends.
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
                for sig in INTERRUPTS if not _ignored(sig)}
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if interrupt_mark() > mark and not _stopping:
            raise KeyboardInterrupt(f"signal {_received[mark]}")
