"""Scale-out with real servers on loopback: PostgreSQL, and an ``mlflow server`` on it.

One PostgreSQL cluster (databases ``mlflow`` and ``optuna``) and one tracking server with the
artifact proxy serve the whole module: concurrent ``scratchlab tune`` workers on one study, one
of them killed with SIGKILL mid-trial, and a Hydra sweep through hydra-submitit-launcher's
``submitit_local``. Everything is checked through MLflow's API and the Optuna study.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from helpers import REPO
from servers import (
    PG_MISSING,
    Postgres,
    assert_lock_excludes_other_processes,
    mlflow_server,
    pg_bin_dir,
    postgres,
    wait_for,
)
from test_sweep_support import FAST, env_for, sweep

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.xdist_group("scaleout_servers")]

WORKERS = 3
TRIALS = 8
WORKER_TIMEOUT_S = 240
KILL_WAIT_S = 120
EPOCHS = "train.epochs=5"  # long enough (~2 s) to kill a worker inside its trial
QUIET = ("train.progress=false", "tracking.log_model=false")


@dataclass
class Servers:
    tracking: str  # http://127.0.0.1:<port>, PostgreSQL behind it
    storage: str  # postgresql+psycopg2://... for Optuna
    pg: Postgres


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip(PG_MISSING)
    root = tmp_path_factory.mktemp("servers")
    (root / "artifacts").mkdir()
    with postgres(bin_dir) as pg:
        backend = pg.create_database("mlflow")
        storage = pg.create_database("optuna")
        with mlflow_server(backend, root / "artifacts", root / "mlflow-server.log") as url:
            yield Servers(url, storage, pg)


def _tune(servers: Servers, out: Path, study: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scratchlab.cli", "tune", "--study", study,
            "--storage", servers.storage, "--trials", str(TRIALS), "--heartbeat", "1",
            "--retries", "1", "--out", str(out), *extra, EPOCHS, *QUIET]


def _trials(servers: Servers, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=servers.storage).trials
    except KeyError:  # not created yet
        return []


def _kill_inside_a_trial(servers: Servers, study: str, victim: subprocess.Popen,
                         client: MlflowClient) -> int:
    """SIGKILL ``victim`` while its trial and that trial's MLflow run are RUNNING."""

    def running_trial() -> int | None:
        mine = [t for t in _trials(servers, study) if t.state == TrialState.RUNNING
                and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
        if mine and client.search_runs(
                [client.get_experiment_by_name("scratchlab").experiment_id],
                filter_string=f"tags.optuna_study = '{study}' and tags.job_num = "
                              f"'{mine[0].number}' and attributes.status = 'RUNNING'"):
            return mine[0].number + 1  # truthy for trial 0 too
        return None

    number = wait_for(running_trial, KILL_WAIT_S, f"worker {victim.pid} to run a trial",
                      alive=lambda: victim.poll() is None, poll_s=0.2) - 1
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    return number


def test_workers_share_a_study_and_survive_a_killed_worker(servers: Servers, tmp_path) -> None:
    study, client = "shared", MlflowClient(tracking_uri=servers.tracking)
    env = env_for(servers.tracking)
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(WORKERS)]
    # the same command, started at the same instant
    workers = [subprocess.Popen(_tune(servers, tmp_path / "out", study), cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        killed = _kill_inside_a_trial(servers, study, workers[0], client)
        for worker in workers[1:]:
            worker.wait(timeout=WORKER_TIMEOUT_S)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
    outputs = [(tmp_path / f"worker{i}.log").read_text() for i in range(WORKERS)]
    assert workers[0].returncode == -signal.SIGKILL
    for worker, output in zip(workers[1:], outputs[1:], strict=True):
        assert worker.returncode == 0, output
        assert f"study {study}: {TRIALS} trials, 1 retried" in output

    # the study: N trials with a result, the killed one failed and run again, nothing running
    trials = _trials(servers, study)
    states = {t.number: t.state for t in trials}
    assert states[killed] == TrialState.FAIL
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == next(t for t in trials if t.number == killed).params
    skipped = [t for t in trials if t.user_attrs.get("skipped")]
    assert all(not t.params for t in skipped)
    ran = [t for t in trials if t not in skipped]
    assert sum(t.state == TrialState.COMPLETE for t in ran) == TRIALS
    fresh = [t for t in ran if "failed_trial" not in t.system_attrs]
    drawn = {tuple(sorted(t.params.items())) for t in fresh}
    assert len(drawn) == len(fresh), "two workers drew the same parameters"
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in ran} <= {
        str(w.pid) for w in workers}

    # MLflow: one parent for the study, one child per trial that ran, none left RUNNING
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.optuna_study = '{study}'",
                              max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(kids) == len(runs) - 1
    assert sorted(int(k.data.tags["job_num"]) for k in kids) == sorted(t.number for t in ran)
    assert not [k for k in kids if k.info.status == "RUNNING"]
    by_trial = {int(k.data.tags["job_num"]): k for k in kids}
    assert by_trial[killed].info.status == "FAILED"
    assert "died" in by_trial[killed].data.tags["ended_by"]
    for trial in ran:
        if trial.state == TrialState.COMPLETE:
            kid = by_trial[trial.number]
            assert kid.info.status == "FINISHED"
            assert kid.data.metrics["val_loss"] == pytest.approx(trial.value)
            assert trial.user_attrs["mlflow_run_id"] == kid.info.run_id
    assert parent.info.status == "FINISHED"
    best = min((t for t in ran if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert parent.data.tags["best_trial"] == str(best.number)
    assert parent.data.tags["best_run_id"] == by_trial[best.number].info.run_id
    assert parent.data.metrics["best_val_loss"] == pytest.approx(best.value)
    assert parent.data.metrics["n_runs"] == len(kids)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} >= {
        "comparison/comparison.png", "comparison/runs.csv"}

    # the same command again (a re-submitted job) finds the study complete and runs nothing
    again = subprocess.run(_tune(servers, tmp_path / "out", study), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert again.returncode == 0, again.stderr
    assert f"study {study}: {TRIALS} trials, 1 retried (0 run by this worker)" in again.stdout
    assert len(_trials(servers, study)) == len(trials)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_submitit_local_sweep_keeps_parent_children_and_divergence(servers: Servers,
                                                                    tmp_path) -> None:
    sweep_dir = sweep(tmp_path, servers.tracking, "hydra/launcher=submitit_local",
                      "optimizer.lr=0.1,10")
    client = MlflowClient(tracking_uri=servers.tracking)
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    parents = client.search_runs(
        [experiment], filter_string=f"tags.sweep_dir = '{sweep_dir.resolve()}'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    kids = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_lr = {k.data.params["optimizer.lr"]: k for k in kids}
    assert sorted(by_lr) == ["0.1", "10"]
    assert by_lr["0.1"].info.status == "FINISHED"
    assert by_lr["10"].info.status == "FAILED" and by_lr["10"].data.tags["diverged"] == "true"
    assert parent.data.metrics["n_runs"] == 2 and parent.data.metrics["n_diverged"] == 1
    assert parent.data.params["best_run_id"] == by_lr["0.1"].info.run_id
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} == {
        "comparison/comparison.png", "comparison/runs.csv", "comparison/runs.json"}
    assert (sweep_dir / "comparison" / "comparison.png").is_file()
    assert (sweep_dir / ".submitit").is_dir()  # the jobs really went through submitit


def test_postgres_advisory_lock_excludes_other_processes(servers: Servers) -> None:
    assert_lock_excludes_other_processes(servers.storage)


def test_a_run_straight_to_postgresql_keeps_its_artifacts_in_the_project(servers: Servers,
                                                                         tmp_path) -> None:
    """No server: MLFLOW_TRACKING_URI names the database; artifacts go to <project>/mlruns."""
    uri = servers.pg.create_database("direct")
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    env = {**env_for(uri), "SCRATCHLAB_ROOT": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "scratchlab.train", *FAST], cwd=tmp_path / "conf",
                          env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("scratchlab").experiment_id])
    assert run.info.status == "FINISHED"
    artifacts = tmp_path / "mlruns" / "artifacts" / run.info.run_id / "artifacts"
    assert run.info.artifact_uri == artifacts.as_uri()
    assert (artifacts / "config.yaml").is_file()
