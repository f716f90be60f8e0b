"""A tracking outage never loses training or a metric: send now, or spool and send later.

For an ``http(s)://`` store every write of a run goes through its :class:`Outbox`. While the
server answers, writes go straight to it. When one fails because the server is unreachable
(connection refused or reset, timeout, HTTP 5xx), it and every later write go to the run's
:class:`~scratchlab.tracking.spool.Spool`, in order, and training goes on; every
``RETRY_EVERY_S`` the outbox tries to send the spool. When the run ends it keeps trying for
``tracking.retry_window_s``; what is still unsent then (the final status included) stays in the
spool for ``scratchlab sync``, and the job exits 4 naming it. A SQLite store is a local file:
nothing to wait for, so writes go straight to it as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from scratchlab.core.retry import retry
from scratchlab.tracking.http import is_outage
from scratchlab.tracking.model import log_spooled_model
from scratchlab.tracking.spool import Spool, unreachable

log = logging.getLogger(__name__)

RETRY_EVERY_S = 5.0
_open: dict[str, Outbox] = {}


def outbox_of(run_id: str) -> Outbox | None:
    return _open.get(run_id)


class Outbox:
    """The writes of one run to an HTTP tracking server."""

    def __init__(self, run_id: str, tracking_uri: str, retry_window_s: float) -> None:
        import mlflow

        self.spool = Spool(run_id, tracking_uri)
        self.retry_window_s = retry_window_s
        self.client = mlflow.MlflowClient(tracking_uri)
        self.last_try = 0.0
        self.log_model = partial(log_spooled_model, run_id, tracking_uri)
        self._lock = self.spool.lock()
        self._lock.acquire()  # held while this process owns the run: sync leaves it alone
        _open[run_id] = self

    @property
    def backlog(self) -> int:
        return len(self.spool.pending())

    def send(self, op: dict[str, Any], direct: Callable[[], object],
             files: list[Path] = ()) -> None:
        """``direct()`` now if nothing waits before it; else (or if it fails for an outage)
        ``op`` goes to the spool, after everything already there."""
        if not self.backlog:
            try:
                direct()
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("%s: tracking server not answering (%s); spooling to %s and "
                            "training on", self.spool.tracking_uri, _short(exc), self.spool.dir)
                self.last_try = time.monotonic()
        self.spool.add(op, list(files))
        if time.monotonic() - self.last_try >= RETRY_EVERY_S:
            self.flush()

    def flush(self) -> bool:
        """Try to send the spool; True when it is empty."""
        try:
            self._send_spool()
        except Exception as exc:
            if not is_outage(exc):
                raise
            return False
        return True

    def _send_spool(self) -> None:
        self.last_try = time.monotonic()
        sent = self.spool.replay(self.client, self.log_model)
        if sent:
            log.info("tracking server back: %d spooled operations of run %s uploaded", sent,
                     self.spool.run_id)

    def finish(self, status: str, end_time: int) -> None:
        """At the run's end: send everything within the retry window, the final status last;
        raise TrackingError (exit 4) naming the spool if the server stays away."""
        try:
            self.spool.add({"kind": "status", "status": status, "end_time": end_time})
            retry(self._send_spool, f"run {self.spool.run_id}: sending the spool", is_outage,
                  attempts=None, timeout_s=self.retry_window_s, delay_s=1.0, backoff=1.0,
                  quiet=True)
        except Exception as exc:
            if not is_outage(exc):
                raise
            raise unreachable(self.spool, self.retry_window_s) from exc
        finally:
            self.close()

    def close(self) -> None:
        _open.pop(self.spool.run_id, None)
        self._lock.release()
        self.spool.remove_if_empty()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]
