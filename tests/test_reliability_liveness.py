"""No run stays RUNNING after its process is gone (issue 10, case 1).

``kill -9`` of a training process used to leave its MLflow run RUNNING forever, listed as
such by ``scratchlab compare``. Real processes and a real SQLite store; the owner rules
(pid reuse, another machine's stale heartbeat) in-process on the same store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from helpers import REPO, epochs_logged, project_env
from scratchlab.core import owner
from scratchlab.tracking import liveness
from servers import wait_for


@pytest.mark.slow
def test_kill_9_mid_training_then_the_next_command_shows_the_run_ended(tmp_path: Path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    env = project_env(REPO, f"sqlite:///{db}")
    train = subprocess.Popen(
        [sys.executable, "-m", "scratchlab.train", "train.epochs=100000", "train.progress=false",
         "tracking.log_model=false", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: epochs_logged(db) >= 2, 120, "training to log epochs")
        alive = subprocess.run([sys.executable, "-m", "scratchlab.cli", "reap"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120)
        assert alive.returncode == 0 and "0 abandoned runs ended" in alive.stdout, alive.stderr
        train.send_signal(signal.SIGKILL)  # no handler runs: the OOM killer's way
        train.wait(timeout=30)
    finally:
        if train.poll() is None:
            train.kill()
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scratchlab.cli", "compare", "--out",
                           str(tmp_path / "cmp")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if "FAILED" in line or "RUNNING" in line)
    assert "FAILED" in row, done.stdout
    assert f"owner process {train.pid}" in done.stderr and "is not running" in done.stderr
    assert time.monotonic() - start < 60
    (run,) = mlflow.MlflowClient(f"sqlite:///{db}").search_runs(["1"])
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.data.tags[liveness.ENDED_BY] == "scratchlab reaper"
    assert run.data.tags[liveness.ENDED_AT].startswith(time.strftime("%Y-"))
    assert int(run.data.tags[owner.HEARTBEAT]) <= run.info.end_time


@pytest.fixture
def client(tracking_uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri)


def _running(client: mlflow.MlflowClient, tags: dict[str, str]) -> str:
    experiment = client.get_experiment_by_name("Default").experiment_id
    return client.create_run(experiment, tags=tags).info.run_id


def test_owner_rules(client: mlflow.MlflowClient) -> None:
    """Alive: this process; a foreign run with a fresh heartbeat; a run with no owner tags.
    Gone: a dead pid; a live pid whose start time differs (reused); a stale heartbeat."""
    me = owner.owner_tags()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        old_ms = str(int(time.time() * 1000) - 3_600_000)
        runs = {
            "self": _running(client, me),
            "foreign-fresh": _running(client, {**me, owner.MACHINE: "elsewhere"}),
            "untagged": _running(client, {}),
            "dead-pid": _running(client, {**me, owner.PID: str(dead.pid)}),
            "reused-pid": _running(client, {**me, owner.PID: str(sleeper.pid)}),
            "foreign-stale": _running(client, {**me, owner.MACHINE: "elsewhere",
                                               owner.HEARTBEAT: old_ms}),
        }
        reaped = {r.run_id: r.reason for r in liveness.reap(client, stale_after_s=600)}
    finally:
        sleeper.kill()
        sleeper.wait()
    names = {name for name, run_id in runs.items() if run_id in reaped}
    assert names == {"dead-pid", "reused-pid", "foreign-stale"}
    assert "pid reused" in reaped[runs["reused-pid"]]
    assert "no heartbeat" in reaped[runs["foreign-stale"]]
    for name, run_id in runs.items():
        assert client.get_run(run_id).info.status == ("FAILED" if name in names else "RUNNING")
    assert liveness.reap(client) == []  # idempotent: nothing left to end


def test_heartbeat_is_refreshed_while_the_run_lives(client: mlflow.MlflowClient) -> None:
    run_id = _running(client, owner.owner_tags())
    first = int(client.get_run(run_id).data.tags[owner.HEARTBEAT])
    with liveness.Heartbeat(run_id, interval_s=0.2):
        wait_for(lambda: int(client.get_run(run_id).data.tags[owner.HEARTBEAT]) > first, 30,
                 "a heartbeat")
    assert os.getpid() == int(client.get_run(run_id).data.tags[owner.PID])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_a_library_reports_as_its_own_error_still_ends_the_run_killed(
        client: mlflow.MlflowClient, sig: int) -> None:
    """A signal landing inside a C extension can surface as that library's error: seen in CI,
    SIGTERM during matplotlib's Agg draw came out as ``ValueError: Invalid bounding box``, the
    run ended FAILED and the worker exited 1 instead of 130 (its trial not re-queued)."""
    from scratchlab.tracking.run import ended_run

    experiment = client.get_experiment_by_name("Default").experiment_id
    with pytest.raises(KeyboardInterrupt) as raised:
        with ended_run(experiment_id=experiment, run_name="drawing") as run:
            try:
                signal.raise_signal(sig)
            except KeyboardInterrupt:  # what the renderer's error path does with it
                raise ValueError("Invalid bounding box") from None
    assert isinstance(raised.value.__cause__, ValueError)
    assert client.get_run(run.info.run_id).info.status == "KILLED"

    with pytest.raises(ValueError):  # no interrupt: the error is the error, the run FAILED
        with ended_run(experiment_id=experiment, run_name="broken") as run:
            raise ValueError("Invalid bounding box")
    assert client.get_run(run.info.run_id).info.status == "FAILED"
