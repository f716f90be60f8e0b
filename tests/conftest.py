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
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from servers import MlflowServer, free_port, wait_for  # noqa: F401 (shared with the tests)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCRATCHLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_MNIST = SHARED_DATA / "mnist"
SHARED_FASHION = SHARED_DATA / "fashion-mnist"
OUR_PROGRAMS = {"python", "python3", "dvc", "mlflow", "scratchlab"}


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


def copy_repo(dest: Path, params: list[str] | None = None) -> Path:
    """A git repo holding the project's committed-or-staged files as they are on disk now,
    with ``params`` (Hydra overrides) written into its committed ``params.yaml``."""
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
    if params is not None:
        from scratchlab.config import write_params

        write_params(dest / "params.yaml", params)
    env = {**os.environ, **GIT_ENV}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, check=True, env=env)
    return dest


def epochs_logged(db: Path) -> int:
    """Epochs a running job has logged to the SQLite store ``db``, read with plain sqlite3: an
    MLflow client here could race the job's own creation of the store's tables."""
    if not db.exists():  # connecting would create it, under the job's feet
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT count(*) FROM metrics WHERE key='val_loss'").fetchone()[0]
    except sqlite3.Error:  # no tables yet, or the job holds a lock
        return 0


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
