"""Where ``scratchlab ui`` lands: the project experiment's training runs, not MLflow's home page.

MLflow 3's UI opens on its GenAI home page; the runs of an experiment live at the client-side
route ``#/experiments/<id>/runs`` (checked in a real browser against MLflow 3.17). Two of that
page's query parameters pick the view: ``workflowType=machine_learning`` the "Model training"
sidebar (else MLflow shows the GenAI one beside the same runs) and ``compareRunsMode=CHART``
the metric charts beside the run list (one click from the table). The experiment id is looked
up (the experiment created if the store has none) without starting a run.

``--open`` cannot open the browser from the ``scratchlab ui`` process itself, which becomes
the MLflow server (``exec``); it starts this module as a small helper that waits, bounded, for
the server's ``/health`` and then calls :func:`webbrowser.open` (which honours ``BROWSER``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from scratchlab.tracking.store import connect

OPEN_TIMEOUT_S = 120.0  # the UI takes 5-15 s to start on 2 busy cores
POLL_S = 0.5
_ANY_ADDRESS = {"", "0.0.0.0", "::"}


def base_url(host: str, port: int) -> str:
    """The server's address as a browser on this machine reaches it."""
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def runs_url(host: str, port: int, experiment_id: str) -> str:
    """Deep link to the experiment's runs, in chart view."""
    view = "workflowType=machine_learning&compareRunsMode=CHART"
    return f"{base_url(host, port)}/#/experiments/{experiment_id}/runs?{view}"


def experiment_runs_url(uri: str, experiment: str, host: str, port: int) -> str:
    """Look up (or create) ``experiment`` in the store at ``uri``; its runs' deep link."""
    return runs_url(host, port, connect(uri, experiment))


def open_when_up(url: str, timeout_s: float = OPEN_TIMEOUT_S) -> None:
    """Start a helper process that opens ``url`` once its server answers ``/health``.

    Returns when the helper has detached (it forks, and its parent exits at once), so the
    caller may ``exec`` the server without leaving a zombie behind.
    """
    helper = subprocess.Popen(
        [sys.executable, "-m", "scratchlab.tracking.ui", url, str(timeout_s)],
        start_new_session=True,  # Ctrl-C on the UI does not interrupt it mid-request
    )
    helper.wait(timeout=30)


def _wait_and_open(url: str, timeout_s: float) -> int:
    import webbrowser

    health = url.split("/#", 1)[0] + "/health"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            print(
                f"scratchlab ui: no answer from {health} within {timeout_s:.0f} s; "
                f"not opening a browser",
                file=sys.stderr,
                flush=True,
            )
            return 1
        time.sleep(POLL_S)
    if not webbrowser.open(url):
        print(f"scratchlab ui: no browser found; open {url}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    if os.fork():  # the caller reaps this parent at once; the child is adopted by init
        os._exit(0)
    sys.exit(_wait_and_open(sys.argv[1], float(sys.argv[2])))
