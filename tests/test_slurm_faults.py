"""What Slurm does to jobs, done to ``scratchlab tune`` workers and a Hydra sweep on a real
cluster (tests/slurm.py): ``scancel`` (SIGTERM, SIGKILL after KillWait), a SIGKILL with no
warning (as from the OOM killer), a time limit, a requeue. After each, no MLflow run is left
RUNNING, the interrupted trial is retried once with the same parameters, and the study has
every trial counted once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from servers import wait_for
from slurm import KILL_WAIT_S, PARTITION, ClusterServers, SlurmCluster, job_of, submit_tune
from test_slurm_sweeps import family
from test_sweep_support import FAST

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.xdist_group("slurm")]

TRIALS = 4
EPOCHS = "train.epochs=15"  # a trial of a few seconds: long enough to be interrupted inside
TUNE = ("--heartbeat", "1", "--retries", "1")
WAIT_S = 300
TIME_LIMIT_S = 60 + 30 + KILL_WAIT_S  # Slurm's shortest limit, its check every 30 s, KillWait


def _trials(servers: ClusterServers, study: str) -> list[FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=servers.storage).trials
    except KeyError:  # not created yet
        return []


def mid_trial(servers: ClusterServers, study: str, job: str | None = None
              ) -> tuple[int, str, int]:
    """Wait until a worker (of Slurm ``job``, if given) is inside a trial, its MLflow run
    RUNNING; that trial's number, the worker's Slurm job (``123_0`` for an array task) and
    its pid."""
    client = MlflowClient(tracking_uri=servers.tracking)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for trial in _trials(servers, study):
            if trial.state != TrialState.RUNNING or "worker" not in trial.user_attrs:
                continue
            pid = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
            owner = job_of(pid)
            if owner is None or (job is not None and owner.split("_")[0] != job):
                continue
            experiment = client.get_experiment_by_name("scratchlab")
            if experiment and client.search_runs(
                    [experiment.experiment_id],
                    filter_string=f"tags.optuna_study = '{study}' and tags.job_num = "
                                  f"'{trial.number}' and attributes.status = 'RUNNING'"):
                return trial.number, owner, pid
        time.sleep(0.2)
    raise AssertionError(f"no worker was inside a trial of {study} within {WAIT_S} s")


def check_study(servers: ClusterServers, study: str, interrupted: int, status: str
                ) -> list[FrozenTrial]:
    """The study after one interrupted trial: TRIALS trials with a result, the interrupted one
    FAIL and retried exactly once with its parameters, its run ``status``; one parent FINISHED,
    a child per trial run, none RUNNING. The trials that ran."""
    trials = [t for t in _trials(servers, study) if not t.user_attrs.get("skipped")]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_number = {t.number: t for t in trials}
    assert by_number[interrupted].state == TrialState.FAIL
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == by_number[interrupted].params
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [interrupted]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == TRIALS
    fresh = [t for t in trials if "failed_trial" not in t.system_attrs]
    assert len({tuple(sorted(t.params.items())) for t in fresh}) == len(fresh) == TRIALS

    parent, kids = family(servers, "optuna_study", study)
    assert parent.info.status == "FINISHED"
    assert [int(k.data.tags["job_num"]) for k in kids] == sorted(by_number)
    by_trial = {int(k.data.tags["job_num"]): k for k in kids}
    assert by_trial[interrupted].info.status == status
    assert {k.info.status for n, k in by_trial.items() if n != interrupted} == {"FINISHED"}
    assert parent.data.metrics["n_runs"] == len(kids)
    return trials


def _logs(workdir: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(workdir.glob("*.out")))


@pytest.mark.parametrize("status", [
    "KILLED",  # scancel: SIGTERM, the worker ends its run and re-queues the trial itself
    "FAILED",  # SIGKILL with no warning (the OOM killer): the other worker notices the silence
], ids=["scancel", "sigkill"])
def test_a_cancelled_or_killed_worker_s_trial_is_retried_once(
        slurm: SlurmCluster, slurm_servers: ClusterServers, tmp_path: Path, status: str) -> None:
    study = f"slurm-{status.lower()}"
    job = submit_tune(slurm, slurm_servers, tmp_path, study, TRIALS, *TUNE, *FAST, EPOCHS,
                      sbatch=("--array=0-1",))
    interrupted, victim, pid = mid_trial(slurm_servers, study)
    if status == "KILLED":
        slurm.run("scancel", victim)
    else:  # not scancel --signal=KILL: Slurm makes that a cancel, SIGTERM first
        os.kill(pid, signal.SIGKILL)
    slurm.wait_done(job, WAIT_S)
    states = slurm.states(job)
    survivor = next(task for task in states if task != victim)
    assert states[survivor] == "COMPLETED", _logs(tmp_path)
    assert states[victim] != "COMPLETED"
    check_study(slurm_servers, study, interrupted, status)
    if status == "FAILED":  # ended by the survivor, saying why
        _, kids = family(slurm_servers, "optuna_study", study)
        [killed] = [k for k in kids if k.data.tags["job_num"] == str(interrupted)]
        assert "died" in killed.data.tags["scratchlab.end_reason"]


def test_a_suspended_worker_s_trial_is_retried_once(
        slurm: SlurmCluster, slurm_servers: ClusterServers, tmp_path: Path) -> None:
    """``scontrol suspend`` (SIGSTOP, as gang scheduling and PreemptMode=SUSPEND do) past the
    heartbeat grace: the other worker fails the silent trial and re-queues it; the worker,
    resumed and then cancelled inside that trial, must not queue it a second time."""
    study = "slurm-suspend"
    job = submit_tune(slurm, slurm_servers, tmp_path, study, TRIALS, *TUNE, *FAST, EPOCHS,
                      sbatch=("--array=0-1",))
    for _ in range(3):  # suspended inside the trial seen, not just after it (a short trial)
        interrupted, victim, pid = mid_trial(slurm_servers, study)
        slurm.run("scontrol", "suspend", victim)
        if any(t.number == interrupted and t.state == TrialState.RUNNING
               and t.user_attrs.get("worker", "").endswith(f":{pid}")
               for t in _trials(slurm_servers, study)):
            break
        slurm.run("scontrol", "resume", victim)
    else:
        raise AssertionError("the worker was never suspended inside a trial")
    wait_for(lambda: any(t.system_attrs.get("failed_trial") == interrupted
                         for t in _trials(slurm_servers, study)), WAIT_S,
             f"trial {interrupted} to be failed and re-queued by the other worker")
    slurm.run("scontrol", "resume", victim)
    slurm.run("scancel", victim)
    slurm.wait_done(job, WAIT_S)
    check_study(slurm_servers, study, interrupted, "KILLED")
    assert "another worker had already failed it" in _logs(tmp_path)


def test_a_worker_past_its_time_limit_is_treated_like_a_preemption(
        slurm: SlurmCluster, slurm_servers: ClusterServers, tmp_path: Path) -> None:
    """A worker whose trial cannot end within its 1-minute limit: Slurm's SIGTERM ends its
    run KILLED and re-queues the trial, which a second worker runs."""
    study = "slurm-timeout"
    slow = tmp_path / "slow"
    slow.mkdir()
    doomed = submit_tune(slurm, slurm_servers, slow, study, TRIALS, *TUNE, *FAST,
                         "train.epochs=100000", sbatch=("--array=0", "--time=1"))
    interrupted, _, _ = mid_trial(slurm_servers, study, job=doomed)
    helper = submit_tune(slurm, slurm_servers, tmp_path, study, TRIALS, *TUNE, *FAST, EPOCHS,
                         sbatch=("--array=0",))
    slurm.wait_done(doomed, TIME_LIMIT_S + WAIT_S)
    slurm.wait_done(helper, WAIT_S)
    assert slurm.states(doomed) == {f"{doomed}_0": "TIMEOUT"}, _logs(slow)
    assert slurm.states(helper) == {f"{helper}_0": "COMPLETED"}, _logs(tmp_path)
    trials = check_study(slurm_servers, study, interrupted, "KILLED")
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert "interrupted; marked FAIL; retry 1 of 1 queued" in _logs(slow)


def test_a_requeued_worker_resumes_the_study_without_duplicates(
        slurm: SlurmCluster, slurm_servers: ClusterServers, tmp_path: Path) -> None:
    """``scontrol requeue`` (what preemption with PreemptMode=REQUEUE does): the worker is
    stopped mid-trial, starts again as the same job, runs the re-queued trial and the rest."""
    study = "slurm-requeue"
    job = submit_tune(slurm, slurm_servers, tmp_path, study, TRIALS, *TUNE, *FAST, EPOCHS,
                      sbatch=("--array=0",))
    interrupted, victim, _ = mid_trial(slurm_servers, study)
    slurm.run("scontrol", "requeue", victim)
    slurm.wait_done(job, WAIT_S)
    history = slurm.run("sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", job)
    assert [line.split("|")[1] for line in history.splitlines()] == ["REQUEUED", "COMPLETED"]
    trials = check_study(slurm_servers, study, interrupted, "KILLED")
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # before and after the requeue
    log = _logs(tmp_path)
    assert log.count(f"study {study} on") == 2  # both attempts kept (--open-mode=append)
    assert f"study {study}: {TRIALS} trials, 1 retried" in log


def test_a_cancelled_sweep_job_ends_its_run_and_the_sweep(
        slurm: SlurmCluster, slurm_servers: ClusterServers, tmp_path: Path) -> None:
    """``scancel`` of one job of a Hydra sweep: its run ends KILLED, and the launching process,
    which learns the job's end from accounting (``sacct``), fails instead of waiting forever;
    the parent ends FAILED. Nothing is left RUNNING."""
    sweep_dir = tmp_path / "sweep"
    caller = subprocess.Popen(
        [sys.executable, "-m", "scratchlab.train", "-m", "hydra/launcher=slurm",
         f"hydra.launcher.partition={PARTITION}", *FAST, "train.epochs=40",
         "optimizer.lr=0.1,1", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=slurm.env(MLFLOW_TRACKING_URI=slurm_servers.tracking),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = MlflowClient(tracking_uri=slurm_servers.tracking)
        victim = _running_sweep_job(client, sweep_dir, job_num="1")
        slurm.run("scancel", victim)
        output, _ = caller.communicate(timeout=WAIT_S)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert caller.returncode != 0
    assert "CANCELLED" in output, output[-3000:]
    parent, kids = family(slurm_servers, "sweep_dir", str(sweep_dir.resolve()))
    assert parent.info.status == "FAILED"
    assert {k.data.tags["job_num"]: k.info.status for k in kids} == {
        "0": "FINISHED", "1": "KILLED"}


def _running_sweep_job(client: MlflowClient, sweep_dir: Path, job_num: str) -> str:
    """Wait until job ``job_num`` of the sweep in ``sweep_dir`` has a RUNNING run; its Slurm
    job id (from the run's owner process)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("scratchlab")
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.job_num = '{job_num}' and attributes.status = 'RUNNING'"
        ) if experiment else []
        for run in runs:
            parent = client.get_run(run.data.tags["mlflow.parentRunId"])
            if parent.data.tags.get("sweep_dir") == str(sweep_dir.resolve()):
                job = job_of(int(run.data.tags["scratchlab.owner.pid"]))
                if job is not None:
                    return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_num} of the sweep never ran within {WAIT_S} s")
