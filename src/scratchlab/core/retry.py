"""The one retry helper: run a call again while its failure is one worth waiting out.

Used for the races a shared store or lock can lose for a moment (SQLite's ``database is
locked``, two workers creating one experiment, an advisory lock held by another worker, a
tracking server coming back), each bounded in attempts or time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def retry(call: Callable[[], T], what: str, when: Callable[[Exception], bool], *,
          attempts: int | None = 6, timeout_s: float | None = None, delay_s: float = 0.2,
          backoff: float = 2.0, max_delay_s: float = 5.0, quiet: bool = False) -> T:
    """``call()``; while it raises an exception ``when`` accepts, wait and call again: up to
    ``attempts`` calls and/or until ``timeout_s`` has passed (then the last error is raised).
    The wait starts at ``delay_s`` and grows by ``backoff`` up to ``max_delay_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    attempt, wait = 0, delay_s
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            out_of_tries = attempts is not None and attempt >= attempts
            out_of_time = deadline is not None and time.monotonic() + wait > deadline
            if not when(exc) or out_of_tries or out_of_time:
                raise
            if not quiet:
                log.warning("%s: %s; retrying in %.1f s", what, _short(exc), wait)
            time.sleep(wait)
            wait = min(wait * backoff, max_delay_s)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
