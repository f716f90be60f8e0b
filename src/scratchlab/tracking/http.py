"""How an HTTP tracking server fails: an outage (worth spooling and retrying) or not.

MLflow's own HTTP retries would spend minutes on a dead server; :func:`fail_fast_http` makes one
attempt cost seconds, so an outage is noticed and spooled while training goes on.
"""

from __future__ import annotations

import logging
import os

HTTP_TIMEOUT_S = "5"  # per request; MLflow's default is 120 s, with 7 retries
HTTP_RETRIES = "1"
_OUTAGE_MARKERS = ("Max retries exceeded", "Connection refused", "Connection reset",
                   "Connection aborted", "timed out", "Failed to establish", "RemoteDisconnected",
                   "503", "502", "504")


def fail_fast_http() -> None:
    """Short HTTP timeouts and retries for MLflow, unless the user set their own."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT_S)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # MLflow reads an int
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a line per retry


def is_outage(exc: BaseException) -> bool:
    """The server did not answer (or answered 5xx): worth spooling and retrying."""
    import requests  # MLflow's HTTP client; imported with MLflow anyway

    if isinstance(exc, ConnectionError | TimeoutError | requests.ConnectionError
                  | requests.Timeout):
        return True
    text = str(exc)
    return any(marker in text for marker in _OUTAGE_MARKERS)
