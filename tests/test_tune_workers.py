"""``scratchlab tune`` workers sharing a study without servers: the budget, seeds, storage URLs
and lock in-process; several real processes on a new SQLite store and on a journal file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from scratchlab.core.errors import ConfigError
from scratchlab.sweeps.study import (
    StaleTrials,
    TrialSeededSampler,
    budget,
    over_budget,
    redact,
    storage_url,
)
from servers import assert_lock_excludes_other_processes, wait_for
from test_sweep_support import FAST, env_for

LR = FloatDistribution(1e-3, 3.0, log=True)


def _study(storage=None, seed: int = 0) -> optuna.Study:
    return optuna.create_study(storage=storage, sampler=TrialSeededSampler(seed),
                               study_name="s", load_if_exists=True)


def test_budget_counts_results_running_and_queued_but_not_retried_failures() -> None:
    study = _study()
    done = study.ask()
    done.suggest_float("lr", 1e-3, 3.0, log=True)
    study.tell(done, 1.0)
    dead = study.ask()
    dead.suggest_float("lr", 1e-3, 3.0, log=True)
    study.tell(dead, state=TrialState.FAIL)
    frozen_dead = study.trials[dead.number]
    StaleTrials(retries=1).retry(study, frozen_dead)  # what the heartbeat check does
    study.ask()  # running elsewhere (it takes the queued retry)
    standing = budget(study.trials)
    assert (standing.done, standing.running, standing.waiting) == (1, 1, 0)
    assert not standing.room(2) and standing.room(3)
    retry = study.trials[-1]
    assert retry.params == frozen_dead.params and retry.system_attrs["failed_trial"] == 1
    # a retry that dies too is not retried again with --retries 1: it then counts as failed
    StaleTrials(retries=1).retry(study, retry)
    assert len(study.trials) == 3


def test_a_trial_created_past_the_total_is_over_budget_but_a_queued_one_never() -> None:
    study = _study()
    first, second = study.ask(), study.ask()  # two workers asked at the same instant
    assert not over_budget(study.trials, first.number, total=1)
    assert over_budget(study.trials, second.number, total=1)
    study.enqueue_trial({"lr": 0.1})
    queued = study.ask()
    assert not over_budget(study.trials, queued.number, total=1)


def test_concurrent_workers_draw_different_parameters_and_one_worker_is_reproducible() -> None:
    storage = optuna.storages.InMemoryStorage()
    worker_a, worker_b = _study(storage), _study(storage)  # two samplers, same train.seed
    trial_a, trial_b = worker_a.ask(), worker_b.ask()
    assert trial_a.suggest_float("lr", 1e-3, 3.0, log=True) != trial_b.suggest_float(
        "lr", 1e-3, 3.0, log=True)
    # what every worker did before: the same seed for the same sampler, the same draws
    plain = [optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)) for _ in (0, 1)]
    assert plain[0].ask().suggest_float("lr", 1e-3, 3.0, log=True) == plain[1].ask(
    ).suggest_float("lr", 1e-3, 3.0, log=True)
    # alone, a study draws the same parameters every time it is run from scratch
    again = _study().ask({"lr": LR})
    assert again.params["lr"] == _study().ask({"lr": LR}).params["lr"]


def test_storage_urls(tmp_path: Path) -> None:
    assert storage_url(None, tmp_path / "m") == f"sqlite:///{tmp_path / 'm' / 'optuna.db'}"
    assert storage_url(f"journal:{tmp_path}/j.log", tmp_path) == f"journal:{tmp_path}/j.log"
    assert storage_url(f"journal:///{tmp_path}/j.log", tmp_path) == f"journal:{tmp_path}/j.log"
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; psycopg2 is what is installed
    assert storage_url("postgresql://u@h/db", tmp_path) == "postgresql+psycopg2://u@h/db"
    assert storage_url("mysql+pymysql://u@h/db", tmp_path) == "mysql+pymysql://u@h/db"
    with pytest.raises(ConfigError, match="expected an SQLAlchemy URL"):
        storage_url("studies.db", tmp_path)
    assert redact("postgresql+psycopg2://u:secret@h:5432/db") == "postgresql+psycopg2://u:***@h:5432/db"


@pytest.mark.slow
def test_storage_lock_excludes_other_processes(tmp_path: Path) -> None:
    assert_lock_excludes_other_processes(f"sqlite:///{tmp_path / 'optuna.db'}")


def _start(args: list[str], cwd: Path, uri: str, n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(args, cwd=cwd, env=env_for(uri), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(n)]


def _finish(workers: list[subprocess.Popen], timeout: int = 300) -> list[str]:
    outputs = []
    for worker in workers:
        try:
            out, _ = worker.communicate(timeout=timeout)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 0, out
        outputs.append(out)
    return outputs


def _one_parent_with_children(uri: str, study: str, numbers: list[int]) -> None:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.optuna_study = '{study}'")
    parents = [r for r in runs if r.data.tags["sweep_role"] == "parent"]
    assert len(parents) == 1
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(k.data.tags["job_num"]) for k in kids) == numbers
    assert {k.info.status for k in kids} == {"FINISHED"}
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["n_runs"] == len(numbers)


@pytest.mark.slow
def test_workers_started_together_on_a_new_project(tmp_path: Path) -> None:
    """A new SQLite study store and MLflow store, created by four processes at once."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [sys.executable, "-m", "scratchlab.cli", "tune", "--study", "new", "--trials", "4",
            "--heartbeat", "2", "--out", str(tmp_path / "out"), *FAST]
    outputs = _finish(_start(args, tmp_path, uri, 4))
    assert all("study new: 4 trials" in out for out in outputs), outputs
    study = optuna.load_study(study_name="new",
                              storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    counted = [t for t in study.trials if not t.user_attrs.get("skipped")]
    assert [t.state for t in counted] == [TrialState.COMPLETE] * 4
    _one_parent_with_children(uri, "new", [t.number for t in counted])


@pytest.mark.slow
def test_two_workers_on_a_journal_file(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    journal = tmp_path / "shared" / "studies.log"
    journal.parent.mkdir()
    args = [sys.executable, "-m", "scratchlab.cli", "tune", "--study", "j", "--trials", "4",
            "--storage", f"journal:{journal}", "--out", str(tmp_path / "out"), *FAST]
    _finish(_start(args, tmp_path, uri, 2))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="j", storage=storage)
    counted = [t for t in study.trials if not t.user_attrs.get("skipped")]
    assert [t.state for t in counted] == [TrialState.COMPLETE] * 4
    _one_parent_with_children(uri, "j", [t.number for t in counted])


def test_runs_of_dead_workers_are_ended_or_marked(tracking_uri) -> None:
    """Killed mid-trial: the RUNNING run ends FAILED. Killed after its run ended but before
    Optuna heard the result: the FINISHED run is tagged, the trial being FAIL."""
    from scratchlab.sweeps.study import end_orphans
    from scratchlab.tracking.store import connect

    experiment = connect(tracking_uri, "orphans")
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.create_run(experiment).info.run_id
    kids = {}
    for job in ("0", "1", "2"):
        kids[job] = client.create_run(
            experiment, tags={"mlflow.parentRunId": parent, "job_num": job}).info.run_id
    client.set_terminated(kids["1"], "FINISHED")
    study = _study()
    for _ in range(3):
        study.ask()
    study.tell(0, state=TrialState.FAIL)
    study.tell(1, state=TrialState.FAIL)  # trial 2 is still running: its run is left alone
    assert end_orphans(parent, experiment, study.trials) == 2
    assert end_orphans(parent, experiment, study.trials) == 0  # once is enough
    dead, late, alive = (client.get_run(kids[j]) for j in ("0", "1", "2"))
    assert dead.info.status == "FAILED" and "died mid-trial" in dead.data.tags["ended_by"]
    assert late.info.status == "FINISHED" and "trial 1" in late.data.tags["trial_failed"]
    assert alive.info.status == "RUNNING" and "ended_by" not in alive.data.tags


@pytest.mark.slow
def test_a_worker_stopped_by_sigterm_requeues_its_trial_and_the_next_one_runs_it(
        tmp_path: Path) -> None:
    """What a scheduler's time limit or preemption does: SIGTERM mid-trial."""
    import signal

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    args = [sys.executable, "-m", "scratchlab.cli", "tune", "--study", "pre", "--trials", "2",
            "--out", str(tmp_path / "out"), "train.epochs=30", "train.progress=false",
            "tracking.log_model=false"]
    from scratchlab.tracking.store import connect

    connect(uri, "scratchlab")  # the store exists before this test reads it beside the worker
    [worker] = _start(args, tmp_path, uri, 1)
    client = MlflowClient(tracking_uri=uri)
    try:
        wait_for(lambda: client.search_runs(
                     [e.experiment_id for e in client.search_experiments()],
                     "tags.job_num = '0' and attributes.status = 'RUNNING'"),
                 120, "a trial's run to be RUNNING", alive=lambda: worker.poll() is None,
                 poll_s=0.2)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 130, out
    trials = optuna.load_study(study_name="pre", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params
    [parent] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  "tags.sweep_role = 'parent'")
    assert parent.info.status == "KILLED"  # not left RUNNING

    out = _finish(_start(args, tmp_path, uri, 1))[0]
    assert "study pre: 2 trials, 1 retried (2 run by this worker)" in out
    trials = optuna.load_study(study_name="pre", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    kids = client.search_runs([parent.info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((k.data.tags["job_num"], k.info.status) for k in kids) == [
        ("0", "KILLED"), ("1", "FINISHED"), ("2", "FINISHED")]
