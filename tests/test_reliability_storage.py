"""A storage fault is one line (issue 18, case 4).

A disk or database I/O error under the default SQLite store (a file-size limit, a full disk, a
store made read-only during the run) ends the run FAILED if the store still takes that write
(else the line says so, and ``scratchlab reap`` ends it later), and prints one line naming the
store and the cause, exit 4. Before: 146 lines with five
tracebacks for ``ulimit -f`` (``sqlite3.OperationalError: disk I/O error``), 457 lines with 16
for a store made read-only mid-run. Real processes, real limits and real filesystems: the
limit is set in the child with ``setrlimit``; the full store is a tmpfs, the read-only one is
made immutable (root only, as the tmpfs tests of ``test_reliability.py``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, epochs_logged, project_env
from scratchlab.config import compose, validate
from scratchlab.data.registry import data_config
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.tracking.store import storage_fault
from servers import wait_for

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="a tmpfs or chattr +i needs root")


# --- which errors are storage faults, and what they are called (in-process) ------------------

def test_a_read_only_database_is_a_storage_fault(tmp_path: Path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE runs (status TEXT)")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con, \
            pytest.raises(sqlite3.OperationalError) as caught:
        con.execute("INSERT INTO runs VALUES ('RUNNING')")
    assert storage_fault(caught.value, f"sqlite:///{db}") == "read-only store"


def test_a_file_size_limit_under_mlflow_is_a_storage_fault(tmp_path: Path) -> None:
    """MLflow copying an artifact past this process's file-size limit (EFBIG)."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    source = tmp_path / "weights.npz"
    source.write_bytes(b"x" * 65536)
    repository = LocalArtifactRepository(str(tmp_path / "artifacts"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError) as caught:
            repository.log_artifact(str(source))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert storage_fault(caught.value, "sqlite:///nowhere/mlflow.db").startswith(
        "file size limit reached")
    outside = OSError(28, "No space left on device")  # ENOSPC, raised outside MLflow
    assert storage_fault(outside, "sqlite:///nowhere/mlflow.db") is None


def test_other_errors_are_not_storage_faults(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert storage_fault(ValueError("bad value"), uri) is None
    try:  # a file of the user's that cannot be read is not the store's fault
        (tmp_path / "missing.csv").read_text()
    except FileNotFoundError as exc:
        assert storage_fault(exc, uri) is None
    denied = PermissionError(13, "Permission denied", "/etc/elsewhere/table.csv")
    assert storage_fault(denied, uri) is None
    inside = PermissionError(13, "Permission denied", str(tmp_path / "artifacts" / "x.png"))
    assert storage_fault(inside, uri) == f"permission denied: {tmp_path}/artifacts/x.png"


# --- real processes ---------------------------------------------------------------------------


def _create_store(db: Path) -> None:
    """The store as a first run leaves it (tables, WAL, the experiment), in a process of its
    own: this one must hold no handle on it (a tmpfs under it could not be unmounted)."""
    code = ("import sys; from scratchlab.tracking.store import connect; "
            "connect(sys.argv[1], 'scratchlab')")
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], check=True,
                   env=project_env(REPO, f"sqlite:///{db}"), timeout=120)


def _job(tmp_path: Path, db: Path, epochs: int, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scratchlab.train", f"train.epochs={epochs}",
         "train.progress=false", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, env=project_env(REPO, f"sqlite:///{db}"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **popen)


def _one_error_line(output: str, returncode: int) -> str:
    assert returncode == 4, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    return errors[0]


def _statuses(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return [status for (status,) in con.execute("SELECT status FROM runs")]


def _ended_as_said(line: str, db: Path, tmp_path: Path) -> None:
    """The run ended FAILED if the store took that write, as the line says; else the line says
    it is left RUNNING and ``scratchlab reap`` ends it once the store takes writes again."""
    if line.endswith("ended FAILED"):
        assert _statuses(db) == ["FAILED"]
        return
    assert line.endswith("left RUNNING: `scratchlab reap` ends it once the store takes writes "
                         "again"), line
    assert _statuses(db) == ["RUNNING"]
    reap = subprocess.run([sys.executable, "-m", "scratchlab.cli", "reap"], cwd=tmp_path,
                          env=project_env(REPO, f"sqlite:///{db}"), capture_output=True,
                          text=True, timeout=120)
    assert reap.returncode == 0 and "1 abandoned run ended" in reap.stdout, reap.stdout
    assert _statuses(db) == ["FAILED"]


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_the_run_ends_failed(tmp_path: Path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    _create_store(db)
    limit = 60_000  # the store's write-ahead log outgrows it within the run's first writes

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # the data cached before the limit (the session's scratch project starts without it): the
    # store is what must hit the limit, not the download
    prepare_data(validate(compose(), data=data_config))
    job = _job(tmp_path, db, 3, preexec_fn=limited)
    output, _ = job.communicate(timeout=300)
    line = _one_error_line(output, job.returncode)
    assert f"sqlite:///{db}: the MLflow store refused a write" in line
    assert f"may not write files over {limit} bytes (ulimit -f)" in line
    assert line.endswith("ended FAILED")
    assert _statuses(db) == ["FAILED"]


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], check=False)


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", "tmpfs", str(path)], check=True)


@pytest.mark.slow
@ROOT_ONLY
def test_a_full_disk_is_one_line_and_the_run_ends_failed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with _tmpfs(store, "8m"):
        _create_store(store / "mlflow.db")
        used = int(subprocess.run(["du", "-sb", str(store)], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        _remount(store, f"size={used + 64 * 1024}")  # 64 KiB left: full within the run
        job = _job(tmp_path, store / "mlflow.db", 5)
        output, _ = job.communicate(timeout=300)
        line = _one_error_line(output, job.returncode)
        _remount(store, "size=8m")
        assert f"sqlite:///{store / 'mlflow.db'}: the MLflow store refused a write" in line
        assert "(disk full" in line
        _ended_as_said(line, store / "mlflow.db", tmp_path)


@contextlib.contextmanager
def _immutable(path: Path) -> None:
    """``path`` and everything in it read-only even to root, open files included (``chattr
    +i``; a tmpfs cannot be remounted read-only while the store has files open for writing)."""
    done = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True, text=True)
    try:
        if done.returncode != 0:
            pytest.skip(f"chattr +i not supported here ({done.stderr.strip()})")
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=False)


@pytest.mark.slow
@ROOT_ONLY
def test_a_store_made_read_only_mid_run_is_one_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    db = store / "mlflow.db"
    _create_store(db)
    job = _job(tmp_path, db, 2000)
    try:
        wait_for(lambda: epochs_logged(db) >= 3, 180, "3 epochs in the store",
                 alive=lambda: job.poll() is None)
        with _immutable(store):
            output, _ = job.communicate(timeout=300)
    finally:
        job.kill()
    line = _one_error_line(output, job.returncode)
    assert f"sqlite:///{db}: the MLflow store refused a write (read-only store: " in line
    _ended_as_said(line, db, tmp_path)
