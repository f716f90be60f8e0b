"""Sweeps on a real Slurm cluster (tests/slurm.py): Hydra multiruns through
``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml, hydra-submitit-launcher), and
``scratchlab tune`` workers as a Slurm job array (the script of docs/slurm.md) on one study in
PostgreSQL, all tracked by an ``mlflow server`` on PostgreSQL, as on a cluster."""

from __future__ import annotations

import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from slurm import PARTITION, ClusterServers, SlurmCluster, submit_tune
from test_sweep_support import FAST

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.xdist_group("slurm")]

SWEEP_S = 600
TUNE_S = 600
LRS = ["0.001", "0.01", "0.1", "1", "10"]


def hydra_sweep(cluster: SlurmCluster, servers: ClusterServers, tmp: Path,
                *overrides: str) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m scratchlab.train -m hydra/launcher=slurm ...`` from ``tmp``, as a user runs
    it on a login node (the partition set on the command line); the sweep dir and the run."""
    sweep_dir = tmp / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "scratchlab.train", "-m", "hydra/launcher=slurm",
         f"hydra.launcher.partition={PARTITION}", *FAST, *overrides,
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp, env=cluster.env(MLFLOW_TRACKING_URI=servers.tracking), capture_output=True,
        text=True, timeout=SWEEP_S)
    return sweep_dir, done


def family(servers: ClusterServers, tag: str, value: str):
    """The parent run whose ``tag`` is ``value``, and its children by ``job_num``."""
    client = MlflowClient(tracking_uri=servers.tracking)
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    [parent] = client.search_runs([experiment], filter_string=f"tags.{tag} = '{value}'"
                                  " and tags.sweep_role = 'parent'")
    kids = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=1000)
    return parent, sorted(kids, key=lambda k: int(k.data.tags["job_num"]))


def array_jobs(cluster: SlurmCluster, sweep_dir: Path) -> dict[str, dict[str, str]]:
    """The Slurm jobs of a sweep (from submitit's folders) as accounting saw them."""
    ids = sorted(d.name for d in (sweep_dir / ".submitit").iterdir()
                 if re.fullmatch(r"\d+_\d+", d.name))
    out = cluster.run("sacct", "-X", "-n", "-P", "-o",
                      "JobID,State,AllocCPUS,ReqMem,Timelimit,Partition", "-j", ",".join(ids))
    keys = ("state", "cpus", "mem", "time", "partition")
    return {row[0]: dict(zip(keys, row[1:], strict=True))
            for row in (line.split("|") for line in out.splitlines())}


def returned(sweep_dir: Path) -> dict[int, float]:
    """What each job sent back to the launching process (submitit's result pickles): the
    Hydra job's return value, the final val_loss, by job number."""
    values = {}
    for path in (sweep_dir / ".submitit").glob("*/*_result.pkl"):
        outcome, job_return = pickle.loads(path.read_bytes())
        assert outcome == "success", job_return
        values[job_return.hydra_cfg.hydra.job.num] = job_return.return_value
    return values


def test_lr_sweep_runs_as_slurm_jobs_under_one_parent(slurm: SlurmCluster,
                                                      slurm_servers: ClusterServers,
                                                      tmp_path: Path) -> None:
    sweep_dir, done = hydra_sweep(slurm, slurm_servers, tmp_path, "+sweep=lr")
    assert done.returncode == 0, done.stderr[-3000:]
    parent, kids = family(slurm_servers, "sweep_dir", str(sweep_dir.resolve()))
    assert parent.info.status == "FINISHED"
    assert [k.info.run_name for k in kids] == [f"optimizer.lr={lr}" for lr in LRS]
    by_lr = {k.data.params["optimizer.lr"]: k for k in kids}
    assert by_lr["10"].info.status == "FAILED" and by_lr["10"].data.tags["diverged"] == "true"
    assert {by_lr[lr].info.status for lr in LRS[:4]} == {"FINISHED"}
    assert parent.data.metrics["n_runs"] == 5 and parent.data.metrics["n_diverged"] == 1
    best = min((k for k in kids if k.info.status == "FINISHED"),
               key=lambda k: k.data.metrics["val_loss"])
    assert parent.data.params["best_run_id"] == best.info.run_id
    client = MlflowClient(tracking_uri=slurm_servers.tracking)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} == {
        "comparison/comparison.png", "comparison/runs.csv", "comparison/runs.json"}
    assert (sweep_dir / "comparison" / "comparison.png").read_bytes().startswith(b"\x89PNG")

    # every point was a Slurm job with the launcher config's resources, and came back
    jobs = array_jobs(slurm, sweep_dir)
    assert len(jobs) == 5 and {j["state"] for j in jobs.values()} == {"COMPLETED"}
    assert {(j["cpus"], j["mem"], j["time"], j["partition"]) for j in jobs.values()} == {
        ("1", "2G", "01:00:00", PARTITION)}
    values = returned(sweep_dir)
    assert sorted(values) == list(range(5))
    for kid in kids:
        value = values[int(kid.data.tags["job_num"])]
        if kid.data.tags["diverged"] == "true":
            assert value == math.inf
        else:
            assert value == pytest.approx(kid.data.metrics["val_loss"])


def test_grid_sweep_with_the_launcher_edited_on_the_command_line(
        slurm: SlurmCluster, slurm_servers: ClusterServers, tmp_path: Path) -> None:
    sweep_dir, done = hydra_sweep(slurm, slurm_servers, tmp_path, "+sweep=grid",
                                  "train.epochs=2", "train.batch_size=32,64",
                                  "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5")
    assert done.returncode == 0, done.stderr[-3000:]
    parent, kids = family(slurm_servers, "sweep_dir", str(sweep_dir.resolve()))
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_runs"] == 6
    points = {(k.data.params["optimizer.name"], k.data.params["train.batch_size"]) for k in kids}
    assert points == {(o, b) for o in ("sgd", "adam", "rmsprop") for b in ("32", "64")}
    assert {k.info.status for k in kids} == {"FINISHED"}
    assert (sweep_dir / "comparison" / "runs.csv").is_file()
    jobs = array_jobs(slurm, sweep_dir)
    assert {(j["state"], j["mem"], j["time"]) for j in jobs.values()} == {
        ("COMPLETED", "1G", "00:05:00")}
    assert sorted(returned(sweep_dir)) == list(range(6))


def test_tune_workers_as_a_job_array_share_one_study(slurm: SlurmCluster,
                                                     slurm_servers: ClusterServers,
                                                     tmp_path: Path) -> None:
    study, trials = "slurm-array", 6
    # 10 epochs: trials long enough that one worker cannot take them all while the other starts
    job = submit_tune(slurm, slurm_servers, tmp_path, study, trials, "--heartbeat", "2",
                      "--out", str(tmp_path / "trials"), *FAST, "train.epochs=10",
                      sbatch=("--array=0-1",))
    slurm.wait_done(job, TUNE_S)
    logs = {p.name: p.read_text() for p in tmp_path.glob("slurm-*.out")}
    assert sorted(logs) == [f"slurm-{job}_0.out", f"slurm-{job}_1.out"]
    assert slurm.states(job) == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}, logs

    ran = optuna.load_study(study_name=study, storage=slurm_servers.storage).trials
    ran = [t for t in ran if not t.user_attrs.get("skipped")]
    assert [t.state for t in ran] == [TrialState.COMPLETE] * trials
    assert len({tuple(sorted(t.params.items())) for t in ran}) == trials
    workers = {t.user_attrs["worker"] for t in ran}
    assert len(workers) == 2, "both array tasks ran trials"
    for log in logs.values():
        assert f"study {study}: {trials} trials" in log

    parent, kids = family(slurm_servers, "optuna_study", study)
    assert parent.info.status == "FINISHED"
    assert [int(k.data.tags["job_num"]) for k in kids] == [t.number for t in ran]
    assert {k.info.status for k in kids} == {"FINISHED"}
    assert {k.data.tags["optuna_worker"] for k in kids} == workers
    client = MlflowClient(tracking_uri=slurm_servers.tracking)
    assert "comparison/comparison.png" in {
        a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
