"""Shared helpers and fixtures: real stores in temp dirs, free loopback ports, the real data
files when ../shared has them, project copies for DVC, and the test tiers.

Tiers: a test that starts a process of ours (Python, dvc, mlflow, scratchlab) is marked
``slow``, one that starts a server ``server``; ``pytest -m "not slow and not server"`` is the
fast in-process tier. An unmarked test that starts such a process fails, so the tiers stay
honest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCRATCHLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_MNIST = SHARED_DATA / "mnist"
SHARED_FASHION = SHARED_DATA / "fashion-mnist"
OUR_PROGRAMS = {"python", "python3", "dvc", "mlflow", "scratchlab"}


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _tiers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail an unmarked (fast-tier) test the moment it starts one of our programs."""
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("server"):
        yield
        return
    real_init = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        program = Path(str(args[0] if isinstance(args, list | tuple) else args).split()[0]).name
        if program in OUR_PROGRAMS or program == Path(sys.executable).name:
            raise AssertionError(
                f"{request.node.nodeid} starts `{program}`: mark it @pytest.mark.slow "
                "(or server), the fast tier runs in-process"
            )
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield
GIT_ENV = {
    "GIT_AUTHOR_NAME": "scratchlab tests",
    "GIT_AUTHOR_EMAIL": "tests@scratchlab.invalid",
    "GIT_COMMITTER_NAME": "scratchlab tests",
    "GIT_COMMITTER_EMAIL": "tests@scratchlab.invalid",
}


@pytest.fixture
def shared_mnist() -> Path:
    """The official t10k IDX files from ../shared/data/mnist (skip when absent)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store in a temp dir, for this process and its children."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


def copy_repo(dest: Path) -> Path:
    """A git repo holding the project's committed-or-staged files as they are on disk now."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file() and not name.startswith(("tests/", "benchmarks/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    env = {**os.environ, **GIT_ENV}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, check=True, env=env)
    return dest


def project_env(root: Path, tracking_uri: str) -> dict[str, str]:
    """Environment for a subprocess working in a project copy at ``root``."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **GIT_ENV,
        "SCRATCHLAB_ROOT": str(root),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }


# CI explores the same fuzz examples every run (a failure there is reproducible); local runs
# keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.3):
    """Poll ``condition`` until it is truthy (returned) or ``timeout_s`` passes (test fails)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


class MlflowServer:
    """A real ``mlflow server`` on a loopback port, in its own process group; stop and start
    it again on the same port and store (an outage and a recovery)."""

    HEALTH_WAIT_S = 120  # 5-15 s on 2 busy cores

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        import urllib.request

        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.directory / 'server.db'}",
             "--artifacts-destination", str(self.directory / "server-artifacts")],
            cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def healthy() -> bool:
            assert self.proc.poll() is None, "mlflow server exited"
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(healthy, self.HEALTH_WAIT_S, f"mlflow server on {self.url}", poll_s=0.5)
        return self

    def stop(self) -> None:
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def rest(self, endpoint: str, body: dict | None = None, **query: str) -> dict:
        """GET (``query``) or POST (``body``) ``/api/2.0/mlflow/<endpoint>``."""
        import json
        import urllib.parse
        import urllib.request

        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if body is None:
            request = urllib.request.Request(f"{url}?{urllib.parse.urlencode(query)}")
        else:
            request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A started :class:`MlflowServer` in ``tmp_path/server``, stopped after the test."""
    directory = tmp_path / "server"
    directory.mkdir()
    server = MlflowServer(directory)
    try:
        yield server.start()
    finally:
        server.stop()
