"""Bad input fails loudly and cleanly: real files, real processes, real MLflow stores.

Each test runs a real entry point (a DVC stage script or the Hydra app) in a subprocess and
checks the exit code, the one-line message naming the culprit, and that nothing half-written
was left behind.
"""

from __future__ import annotations

import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from helpers import REPO, copy_repo, epochs_logged, project_env
from scratchlab.config import write_params
from scratchlab.data.ex3d1 import write_ex3d1
from scratchlab.data.idx import write_idx
from servers import wait_for

# every case here runs the product as a user does: real processes
pytestmark = pytest.mark.slow

CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


def _env(tmp_path: Path) -> dict[str, str]:
    return project_env(REPO, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")


def _stage(
    name: str, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"scratchlab.stages.{name}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _app(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scratchlab.train", *args, f"hydra.run.dir={cwd / 'out'}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _output(done: subprocess.CompletedProcess[str]) -> str:
    """Everything the process logged (Hydra's job logging goes to stdout)."""
    return done.stdout + done.stderr


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single ERROR line an expected failure logs (and no traceback)."""
    output = _output(done)
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if " ERROR " in line or "[ERROR]" in line]
    assert len(errors) == 1, output
    return errors[0]


def _workdir(tmp_path: Path, *overrides: str) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    write_params(work / "params.yaml", [*overrides, "train.progress=false"])
    return work


def _leftovers(directory: Path) -> list[str]:
    """Files in ``directory`` other than what a failed stage may legitimately keep."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


# -- data files ------------------------------------------------------------------------------


def _bad_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (mirror / name).write_bytes(gzip.compress(b"not the real file"))
    return mirror


def test_wrong_checksum_names_the_file_and_keeps_nothing(tmp_path: Path) -> None:
    work = _workdir(tmp_path, "data=mnist", f"data.mirror={_bad_mirror(tmp_path)}",
                    f"data.base_urls=[{CLOSED_PORT_URL}/]")
    done = _stage("fetch", work, _env(tmp_path))
    assert done.returncode == 3
    line = _error_line(done)
    assert "train-images-idx3-ubyte.gz" in line and "md5" in line
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in line
    assert _leftovers(work / "data" / "raw") == []


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ("truncated", "truncated"),
        ("not_idx", "IDX"),
        ("count", "labels"),
    ],
)
def test_bad_idx_files_fail_with_the_file_named(tmp_path: Path, images: str, message: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (60, 28, 28), dtype=np.uint8)
    labels = np.arange(60, dtype=np.uint8) % 10
    write_idx(src / "images.gz", pixels)
    write_idx(src / "labels.gz", labels[:59] if images == "count" else labels)
    if images == "truncated":
        blob = (src / "images.gz").read_bytes()
        (src / "images.gz").write_bytes(blob[: len(blob) // 2])
    elif images == "not_idx":
        (src / "images.gz").write_bytes(gzip.compress(b"<html>Not Found</html>"))
    work = _workdir(tmp_path, "data=idx", f"data.images={src / 'images.gz'}",
                    f"data.labels={src / 'labels.gz'}")
    env = _env(tmp_path)
    fetched = _stage("fetch", work, env)
    if fetched.returncode == 0:  # fetch only copies unpinned files; parsing catches the rest
        done = _stage("preprocess", work, env)
    else:
        done = fetched
    assert done.returncode == 3
    line = _error_line(done)
    assert message in line and ("images.gz" in line or "labels.gz" in line)
    assert _leftovers(work / "data" / "processed") == []


@pytest.mark.parametrize(
    ("sheets", "message"),
    [
        ({"X": "good"}, "sheet 'y'"),
        ({"X": "good", "y": "bad_label"}, "sheet y"),
    ],
)
def test_bad_ex3d1_workbook_names_the_sheet(tmp_path: Path, sheets: dict, message: str) -> None:
    import pandas as pd

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    X = np.random.default_rng(0).random((20, 400))
    y = np.arange(20) % 10 + 1
    if "y" in sheets:
        y[7] = 11
        write_ex3d1(mirror / "ex3d1.xlsx", X, y)
    else:
        with pd.ExcelWriter(mirror / "ex3d1.xlsx", engine="openpyxl") as writer:
            pd.DataFrame(X).to_excel(writer, sheet_name="X", header=False, index=False)
    work = _workdir(tmp_path, "data=ex3d1", f"data.mirror={mirror}",
                    f"data.url={CLOSED_PORT_URL}/ex3d1.xlsx")
    env = _env(tmp_path)
    assert _stage("fetch", work, env).returncode == 0
    done = _stage("preprocess", work, env)
    assert done.returncode == 3
    line = _error_line(done)
    assert "ex3d1.xlsx" in line and message in line.replace('"', "'")
    assert _leftovers(work / "data" / "processed") == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("a,b,label\n1,2,x\n3,4,y\n", "column 'target'"),
        ("", "empty"),
        ("a,b,target\n1,2,0\n3,,1\n5,6,0\n", "column 'b'"),
        ("a,b,target\n1,2,0\n3,abc,1\n5,6,0\n", "'abc'"),
        ("a,b,target\n1,2,0\n3,4,0\n5,6,0\n", "single class"),
    ],
)
def test_bad_user_csv_names_the_column(tmp_path: Path, table: str, message: str) -> None:
    csv = tmp_path / "table.csv"
    csv.write_text(table)
    work = _workdir(tmp_path, "data=csv", f"data.path={csv}")
    env = _env(tmp_path)
    fetched = _stage("fetch", work, env)
    done = fetched if fetched.returncode else _stage("preprocess", work, env)
    assert done.returncode == 3
    line = _error_line(done)
    assert "table.csv" in line and message in line
    assert _leftovers(work / "data" / "processed") == []


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", "optimizer.lr=0 is out of range"),
        ("optimizer.name=adamw", "optimizer.name='adamw' is not allowed"),
        ("model.activation=swish", "model.activation='swish' is not allowed"),
        ("train.batch_size=100000", "train.batch_size=100000 exceeds"),
        ("model.hidden=[0]", "model.hidden[0]=0"),
        ("train.val_fraction=1.5", "train.val_fraction=1.5 is out of range"),
    ],
)
def test_invalid_config_is_rejected_before_any_run(
    tmp_path: Path, override: str, message: str
) -> None:
    env = _env(tmp_path)
    done = _app([override, "train.progress=false"], tmp_path, env)
    assert done.returncode == 2, _output(done)
    assert message in _error_line(done)
    assert not (tmp_path / "store" / "mlflow.db").exists(), "an MLflow run started anyway"


HEAVY_MODULES = ("mlflow", "sklearn", "pandas", "matplotlib")


def test_config_error_comes_before_the_heavy_imports(tmp_path: Path) -> None:
    """The Hydra app rejects a bad value before importing MLflow, scikit-learn, pandas or
    matplotlib (seconds of start-up), so the error shows about a second after the command."""
    report = (
        "import atexit, runpy, sys; "
        f"heavy = lambda: [m for m in {HEAVY_MODULES!r} if m in sys.modules]; "
        "atexit.register(lambda: print('HEAVY', heavy())); "
        f"sys.argv = ['train', 'optimizer.lr=0', 'hydra.run.dir={tmp_path / 'out'}']; "
        "runpy.run_module('scratchlab.train', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", report], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, _output(done)
    assert "optimizer.lr=0 is out of range" in _error_line(done)
    assert "HEAVY []" in done.stdout, _output(done)


def test_dataset_name_typo_lists_the_choices(tmp_path: Path) -> None:
    done = _app(["data=mnits"], tmp_path, _env(tmp_path))
    assert done.returncode != 0
    assert "mnits" in _output(done) and "digits" in _output(done)
    assert not (tmp_path / "store" / "mlflow.db").exists()


# -- training and tracking -------------------------------------------------------------------


def _runs(tmp_path: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("scratchlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_divergence_stops_and_marks_the_run(tmp_path: Path) -> None:
    done = _app(["optimizer=sgd", "optimizer.lr=1000", "train.epochs=30",
                 "train.progress=false"], tmp_path, _env(tmp_path))
    assert done.returncode == 5, _output(done)
    assert "diverged at epoch" in _output(done)
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["diverged"] == "true" and 1 <= int(run.data.tags["diverged_epoch"]) < 30
    assert not (tmp_path / "out" / "model.npz").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_training_ends_the_run_killed(tmp_path: Path, sig: int) -> None:
    args = ["train.epochs=100000", "train.progress=false", f"hydra.run.dir={tmp_path / 'out'}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchlab.train", *args], cwd=tmp_path, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: epochs_logged(tmp_path / "store" / "mlflow.db"), 120,
                 "training to log an epoch", alive=lambda: proc.poll() is None)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    (run,) = _runs(tmp_path)
    assert run.info.status == "KILLED"
    assert not (tmp_path / "out" / "model.npz").exists()
    assert not list((tmp_path / "out").glob(".*.tmp*"))


def test_unreachable_server_fails_fast_before_training(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "MLFLOW_TRACKING_URI": CLOSED_PORT_URL}
    start = time.monotonic()
    done = _app(["train.progress=false"], tmp_path, env, timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode == 4, _output(done)
    assert f"{CLOSED_PORT_URL}: tracking server unreachable" in _error_line(done)
    assert elapsed < 30
    assert not (tmp_path / "out" / "history.json").exists()


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")


@pytest.fixture
def mounts():
    mounted: list[Path] = []
    yield mounted
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_read_only_store_names_the_path(tmp_path: Path, mounts: list[Path]) -> None:
    store = tmp_path / "store"
    _mount_tmpfs(store, "ro,size=1m")
    mounts.append(store)
    done = _app(["train.progress=false"], tmp_path, _env(tmp_path))
    assert done.returncode == 4, _output(done)
    assert f"{store}: MLflow store is not writable" in _error_line(done)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_names_the_path_and_leaves_no_partial_file(
    tmp_path: Path, mounts: list[Path]
) -> None:
    work = _workdir(tmp_path)
    env = _env(tmp_path)
    for stage in ("fetch", "preprocess"):
        assert _stage(stage, work, env).returncode == 0
    models = work / "models"
    _mount_tmpfs(models, "size=24k")
    mounts.append(models)
    done = _stage("train", work, env)
    assert done.returncode != 0
    line = _error_line(done)
    assert str(Path("models")) in line and "No space left on device" in line
    leftovers = _leftovers(models)
    assert "model.npz" not in leftovers and not [n for n in leftovers if n.endswith(".tmp")]
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"


# -- an interrupted pipeline -------------------------------------------------------------------


def _lock_without_run_ids(root: Path) -> dict:
    """dvc.lock's hashes minus models/run.json's (every run has its own MLflow run id) and the
    models/ folder's that evaluate depends on (it holds run.json)."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {(stage, kind, entry["path"]): entry.get("md5")
            for stage, body in stages.items() for kind in ("deps", "outs")
            for entry in body.get(kind, []) if entry["path"] not in ("models/run.json", "models")}


def test_interrupted_repro_resumes_and_ends_identical(tmp_path: Path) -> None:
    # ~5 s of training (2 ms an epoch): the interrupt, sent once the second batch of epoch
    # metrics is in the store (FLUSH_S = 2 s after the first), lands mid-training
    root = copy_repo(tmp_path / "project", ["train.epochs=2500", "train.progress=false",
                                            "tracking.log_model=false"])
    db = root / "mlruns" / "mlflow.db"
    env = project_env(root, f"sqlite:///{db}")
    proc = subprocess.Popen(["dvc", "repro"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: epochs_logged(db) >= 3, 180, "dvc repro's training to log 3 epochs",
                 alive=lambda: proc.poll() is None, poll_s=0.1)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert not (root / "models" / "model.npz").exists()

    resumed = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Running stage 'fetch'" not in resumed.stdout
    assert "Running stage 'preprocess'" not in resumed.stdout
    assert "Running stage 'train'" in resumed.stdout
    lock = _lock_without_run_ids(root)
    weights = (root / "models" / "model.npz").read_bytes()
    metrics = (root / "reports" / "metrics.json").read_text()

    again = subprocess.run(["dvc", "repro", "--force", "--downstream", "train"], cwd=root,
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _lock_without_run_ids(root) == lock
    assert (root / "models" / "model.npz").read_bytes() == weights
    assert (root / "reports" / "metrics.json").read_text() == metrics

    with sqlite3.connect(db) as con:
        statuses = [s for (s,) in con.execute("SELECT status FROM runs ORDER BY start_time")]
    assert statuses == ["KILLED", "FINISHED", "FINISHED"]
