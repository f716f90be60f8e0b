"""`scratchlab ui`: serves the project's store on loopback only (unless told otherwise), prints
the deep link to the experiment's training runs and, with ``--open``, opens it in the browser."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from scratchlab.tracking.ui import base_url, runs_url
from servers import free_port, healthy, wait_for

SERVER_START_TIMEOUT_S = 120
VIEW = "workflowType=machine_learning&compareRunsMode=CHART"


def test_runs_url() -> None:
    assert runs_url("127.0.0.1", 5000, "7") == f"http://127.0.0.1:5000/#/experiments/7/runs?{VIEW}"
    assert base_url("0.0.0.0", 5001) == "http://127.0.0.1:5001"  # any address: loopback
    assert base_url("::1", 5001) == "http://[::1]:5001"
    assert base_url("localhost", 80) == "http://localhost:80"


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store whose 'scratchlab' experiment, created by `scratchlab ui`, will not be id 1."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    for name in ("other-a", "other-b"):
        client.create_experiment(name, artifact_location=(tmp_path / name).as_uri())
    return uri


@pytest.fixture
def browser(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in browser for ``BROWSER``: appends each URL it is given to a file."""
    script, record = tmp_path / "browser.sh", tmp_path / "opened.txt"
    script.write_text(f'#!/bin/sh\necho "$1" >> "{record}"\n')
    script.chmod(0o755)
    return script, record


def _open_helpers(port: int) -> set[int]:
    """Processes of the helper `scratchlab ui --open` starts to open the link for ``port``
    (``python -m scratchlab.tracking.ui URL``): without one, no browser can be opened."""
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = process.info["cmdline"] or []
        if "scratchlab.tracking.ui" in command and any(f":{port}/" in c for c in command):
            found.add(process.info["pid"])
    return found


def _run_ui(tmp_path: Path, store: str, browser: Path, port: int, *extra: str):
    """Start `scratchlab ui`, wait (bounded) until it answers /health; the process, the first
    two lines it printed (the mlflow command and the link), and the browser helpers seen
    meanwhile (a helper polls /health until the server answers, so it lives at least that long)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "BROWSER": str(browser)}
    scratchlab = Path(sys.executable).parent / "scratchlab"
    proc = subprocess.Popen([str(scratchlab), "ui", "--port", str(port), *extra], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    helpers: set[int] = set()

    def ready() -> bool:
        helpers.update(_open_helpers(port))
        return healthy(f"http://127.0.0.1:{port}")

    try:
        wait_for(ready, SERVER_START_TIMEOUT_S, "the UI to answer /health",
                 alive=lambda: proc.poll() is None)
    except BaseException:
        _stop(proc)
        raise
    return proc, [proc.stdout.readline(), proc.stdout.readline()], helpers


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _experiment_id(uri: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri).get_experiment_by_name("scratchlab").experiment_id


@pytest.mark.slow
def test_ui_binds_to_loopback_and_prints_the_runs_link(tmp_path, store, browser) -> None:
    port = free_port()
    proc, lines, helpers = _run_ui(tmp_path, store, browser[0], port)
    try:
        assert _listening_addresses(port) == {"127.0.0.1"}
        assert "--host 127.0.0.1" in lines[0] and f"sqlite:///{tmp_path}" in lines[0]
        link = re.search(r"http://\S+", lines[1]).group(0)
        experiment_id = _experiment_id(store)
        assert experiment_id not in ("0", "1")  # the store's own id, not a guess
        assert link == f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?{VIEW}"
        # the part before '#' is what the server sees; the route after it is client-side
        with urllib.request.urlopen(link.split("#")[0], timeout=10) as response:
            assert response.status == 200
            assert "text/html" in response.headers["Content-Type"]
        assert helpers == set(), "started the browser helper without --open"
        assert not browser[1].exists(), "opened a browser without --open"
    finally:
        _stop(proc)


@pytest.mark.slow
def test_ui_open_opens_the_link_in_the_browser(tmp_path, store, browser) -> None:
    port = free_port()
    proc, lines, helpers = _run_ui(tmp_path, store, browser[0], port, "--open")
    try:
        link = re.search(r"http://\S+", lines[1]).group(0)
        assert f"/#/experiments/{_experiment_id(store)}/runs?" in link
        assert helpers, "--open started no browser helper"  # what the test above relies on
        # the helper polls /health every 0.5 s, then calls the browser, which writes one line
        opened = wait_for(lambda: browser[1].exists() and browser[1].read_text().endswith("\n")
                          and browser[1].read_text(), 30, "--open to call the browser")
        assert opened.splitlines() == [link]
    finally:
        _stop(proc)
