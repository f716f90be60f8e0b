"""Retry MLflow writes that lose a race for a busy SQLite database.

MLflow waits 20 s on a locked SQLite file, but SQLite refuses at once (``database is locked``)
when two connections would deadlock upgrading to a write lock; the only cure is to try again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_lock_error(exc: BaseException) -> bool:
    return "database is locked" in str(exc) or "database is busy" in str(exc)


def with_retry(call: Callable[[], T], what: str, attempts: int = 6, delay_s: float = 0.2) -> T:
    """Run ``call``; on a SQLite lock error wait (doubling each time) and run it again."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if not is_lock_error(exc) or attempt == attempts - 1:
                raise
            wait = delay_s * 2**attempt
            log.warning("%s: store busy, retrying in %.1f s", what, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")
