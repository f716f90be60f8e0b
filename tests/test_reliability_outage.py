"""A tracking outage never loses training or a metric (issue 10, case 2).

A real ``mlflow server`` on loopback is stopped while a job trains. Before the outbox, the job
hung ~495 s in MLflow's HTTP retries, exited 1 with a traceback and left the run RUNNING.
Now: (A) the server comes back within the retry window: every epoch's metric, the artifacts,
the model and the final status arrive, each once; (B) it stays away: the job exits 4 within
seconds naming the spool, and ``scratchlab sync`` uploads it later, twice without duplicates,
the model included (issue 18: the model's replay went to MLflow's default store, a stray
``./mlflow.db``); (C) ``scratchlab sync`` stopped at several points (after its first operation,
inside the model's upload, after it) and run again: each metric and the model once, and the
run's status the training process's (issue 18: FAILED, and a second model left PENDING).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, project_env
from servers import MlflowServer, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.server]
EPOCHS = 150


def _job(tmp_path: Path, server: MlflowServer, name: str, *overrides: str) -> subprocess.Popen:
    env = {**project_env(REPO, server.url), "SCRATCHLAB_SPOOL": str(tmp_path / "spool")}
    return subprocess.Popen(
        [sys.executable, "-m", "scratchlab.train", f"train.epochs={EPOCHS}",
         "train.progress=false", *overrides, f"hydra.run.dir={tmp_path / name}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps(server: MlflowServer, run_id: str, key: str = "val_loss") -> list[int]:
    history = server.rest("metrics/get-history", run_id=run_id, metric_key=key)
    return sorted(int(m["step"]) for m in history.get("metrics", []))


def _logged_epochs(server: MlflowServer, run_file: Path) -> int:
    if not run_file.exists():
        return 0
    try:
        return len(_steps(server, json.loads(run_file.read_text())["run_id"]))
    except OSError:
        return 0


def _artifacts(server: MlflowServer, run_id: str, path: str = "") -> set[str]:
    listing = server.rest("artifacts/list", run_id=run_id, path=path)
    return {f["path"] for f in listing.get("files", [])}


def _models(server: MlflowServer, run_id: str) -> list[dict]:
    """The run's logged models (MLflow leaves deleted ones out)."""
    experiment = server.rest("runs/get", run_id=run_id)["run"]["info"]["experiment_id"]
    models = server.rest("logged-models/search", {"experiment_ids": [experiment]})
    return [m["info"] for m in models.get("models", [])
            if m["info"].get("source_run_id") == run_id]


def _status(server: MlflowServer, run_id: str) -> str:
    return server.rest("runs/get", run_id=run_id)["run"]["info"]["status"]


def _outage_spool(tmp_path: Path, server: MlflowServer, name: str) -> str:
    """A job whose server goes away after 3 epochs and stays away: it exits 4, its run
    RUNNING on the server and the rest (the model included) in the spool; its run id."""
    job = _job(tmp_path, server, name, "tracking.retry_window_s=3")
    try:
        wait_for(lambda: _logged_epochs(server, tmp_path / name / "run.json") >= 3, 120,
                 "3 epochs on the server")
        server.stop()
        output, _ = job.communicate(timeout=300)
    finally:
        job.kill()
    assert job.returncode == 4, output
    return json.loads((tmp_path / name / "run.json").read_text())["run_id"]


def _sync_env(tmp_path: Path, server: MlflowServer) -> dict[str, str]:
    """``scratchlab sync`` with no tracking URI of its own, in a project with no store: the
    spool alone says where each run goes."""
    env = {**project_env(tmp_path / "elsewhere", server.url),
           "SCRATCHLAB_SPOOL": str(tmp_path / "spool")}
    del env["MLFLOW_TRACKING_URI"]
    for directory in ("elsewhere", "cwd"):
        (tmp_path / directory).mkdir(exist_ok=True)
    return env


SYNC = [sys.executable, "-m", "scratchlab.cli", "sync"]


def _check_complete(server: MlflowServer, run_id: str) -> None:
    assert _steps(server, run_id) == list(range(1, EPOCHS + 1))  # each epoch once
    assert _steps(server, run_id, "loss") == list(range(1, EPOCHS + 1))
    run = server.rest("runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert {"history.json", "weights", "evaluation", "config.yaml"} <= _artifacts(server, run_id)
    assert "evaluation/metrics.json" in _artifacts(server, run_id, "evaluation")
    metrics = {m["key"] for m in run["data"]["metrics"]}
    assert {"test_accuracy", "val_loss"} <= metrics
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["diverged"] == "false"
    for key in metrics:  # no metric twice at a step, whatever was replayed how often
        steps = _steps(server, run_id, key)
        assert len(steps) == len(set(steps)), (key, steps)


def test_server_back_within_the_window_gets_everything_once(tmp_path, mlflow_server) -> None:
    job = _job(tmp_path, mlflow_server, "a", "tracking.retry_window_s=120")
    try:
        wait_for(lambda: _logged_epochs(mlflow_server, tmp_path / "a" / "run.json") >= 3, 120,
                 "3 epochs on the server")
        mlflow_server.stop()
        # the job trains on meanwhile, spooling what it cannot send
        wait_for(lambda: any((tmp_path / "spool").glob("*/0*.json")), 120,
                 "the job to spool a write during the outage", alive=lambda: job.poll() is None)
        mlflow_server.start()
        output, _ = job.communicate(timeout=300)
    finally:
        job.kill()
    assert job.returncode == 0, output
    assert "spooling to" in output and "Traceback" not in output
    run_id = json.loads((tmp_path / "a" / "run.json").read_text())["run_id"]
    _check_complete(mlflow_server, run_id)
    models = mlflow_server.rest("logged-models/search", {
        "experiment_ids": [mlflow_server.rest("runs/get", run_id=run_id)["run"]["info"][
            "experiment_id"]]})
    assert [m["info"]["source_run_id"] for m in models.get("models", [])] == [run_id]
    assert not list((tmp_path / "spool").glob("*/0*.json"))


def test_server_still_away_exits_4_naming_the_spool_then_sync(tmp_path, mlflow_server) -> None:
    job = _job(tmp_path, mlflow_server, "b", "tracking.retry_window_s=3")
    try:
        wait_for(lambda: _logged_epochs(mlflow_server, tmp_path / "b" / "run.json") >= 3, 120,
                 "3 epochs on the server")
        mlflow_server.stop()
        stopped = time.monotonic()
        output, _ = job.communicate(timeout=300)
        outage_s = time.monotonic() - stopped
    finally:
        job.kill()
    assert job.returncode == 4, output
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert f"{mlflow_server.url}: tracking server unreachable for 3 s" in errors[0]
    assert str(tmp_path / "spool") in errors[0] and "scratchlab sync" in errors[0]
    assert outage_s < 60, f"{outage_s:.0f} s from the outage to the exit"
    run_id = json.loads((tmp_path / "b" / "run.json").read_text())["run_id"]
    assert (tmp_path / "b" / "model.npz").exists()  # the training is not lost
    assert list((tmp_path / "spool").glob("*/0*.files/network"))  # the model waits there

    env = _sync_env(tmp_path, mlflow_server)
    away = subprocess.run(SYNC, cwd=tmp_path / "cwd", env=env, capture_output=True, text=True,
                          timeout=120)
    assert away.returncode == 4 and "scratchlab sync" in away.stderr, away.stderr
    mlflow_server.start()
    assert _status(mlflow_server, run_id) == "RUNNING"
    first = subprocess.run(SYNC, cwd=tmp_path / "cwd", env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"run {run_id}:" in first.stdout and "uploaded" in first.stdout
    _check_complete(mlflow_server, run_id)
    assert [m["status"] for m in _models(mlflow_server, run_id)] == ["LOGGED_MODEL_READY"]
    again = subprocess.run(SYNC, cwd=tmp_path / "cwd", env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "nothing to sync" in again.stdout, again.stdout
    _check_complete(mlflow_server, run_id)
    assert len(_models(mlflow_server, run_id)) == 1
    # only the spool's own server was written: nothing where sync ran, no default store
    assert not list((tmp_path / "cwd").iterdir()) and not list((tmp_path / "elsewhere").iterdir())


def test_sync_stopped_anywhere_then_resumed_sends_everything_once(tmp_path, mlflow_server):
    run_id = _outage_spool(tmp_path, mlflow_server, "c")
    mlflow_server.start()
    env = _sync_env(tmp_path, mlflow_server)
    operations = lambda: len(list((tmp_path / "spool").glob("*/0*.json")))  # noqa: E731
    total = operations()
    assert total >= 4, total  # metrics, artifacts, the model, the status at least

    def stopped(when, what: str, signum: int) -> int:
        sync = subprocess.Popen(SYNC, cwd=tmp_path / "cwd", env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(when, 120, what, alive=lambda: sync.poll() is None, poll_s=0.02)
            sync.send_signal(signum)
            output, _ = sync.communicate(timeout=60)
        finally:
            sync.kill()
        assert "Traceback" not in output, output
        return sync.returncode

    # 1. after the first operation went
    assert stopped(lambda: operations() < total, "the first operation sent",
                   signal.SIGINT) == 130
    assert 0 < operations() < total and _status(mlflow_server, run_id) == "RUNNING"
    # 2. inside the model's upload: MLflow has created it, not yet finished it. A small model
    # can finish between the poll and the signal, which may then land as Python exits (its
    # default handler back): killed by SIGINT instead of 130; what follows must hold either way
    assert stopped(lambda: any(m["status"] == "LOGGED_MODEL_PENDING"
                               for m in _models(mlflow_server, run_id)),
                   "the model's upload under way", signal.SIGINT) in (130, -signal.SIGINT)
    assert _status(mlflow_server, run_id) == "RUNNING"  # an interrupted sync ends no run
    # 3. killed outright once the model is there (before or after its operation is deleted)
    assert stopped(lambda: any(m["status"] == "LOGGED_MODEL_READY"
                               for m in _models(mlflow_server, run_id)),
                   "the model uploaded", signal.SIGKILL) == -signal.SIGKILL
    done = subprocess.run(SYNC, cwd=tmp_path / "cwd", env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    _check_complete(mlflow_server, run_id)
    assert [m["status"] for m in _models(mlflow_server, run_id)] == ["LOGGED_MODEL_READY"]
    assert not (tmp_path / "spool" / run_id).exists()
    assert not list((tmp_path / "cwd").iterdir()) and not list((tmp_path / "elsewhere").iterdir())
    assert os.path.getsize(tmp_path / "server" / "server.db") > 0
