"""The Slurm cluster the Slurm tests run on (tests/slurm.py): real daemons on loopback only,
accounting that sees a cancelled job, a short grace period before SIGKILL, and nothing left
behind when the cluster stops or when the process that started it dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servers import wait_for
from slurm import (
    DAEMONS,
    KILL_WAIT_S,
    TEARDOWN_S,
    SlurmCluster,
    leftovers,
    listening,
    slurm_cluster,
)

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.xdist_group("slurm")]

TESTS = Path(__file__).parent
JOB_S = 60
# a job step that ignores SIGTERM: only KillWait's SIGKILL ends it
STUBBORN = ("srun python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "time.sleep(300)'")


def _names(conf: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in leftovers(conf)]


def _running(cluster: SlurmCluster, job: str) -> bool:
    return cluster.states(job).get(job) == "RUNNING" and any(
        "time.sleep(300)" in name for name in _names(cluster.conf))


def test_jobs_run_and_every_daemon_listens_on_loopback_only(slurm: SlurmCluster) -> None:
    job = slurm.sbatch("--output=/dev/null", "--wrap", STUBBORN)
    wait_for(lambda: _running(slurm, job), JOB_S, f"job {job} to run")
    sockets = listening(slurm.conf)
    assert {name for name, _, _ in sockets} >= {*DAEMONS[:-1], "srun"}  # munged: a unix socket
    assert {address for _, address, _ in sockets} == {"127.0.0.1"}, sockets

    slurm.run("scancel", job)
    # SIGTERM ignored: SIGKILL after KillWait ends it; accounting (what submitit asks) says so
    wait_for(lambda: job not in slurm.queued(), KILL_WAIT_S + 30, f"job {job} to end")
    assert slurm.states(job)[job].startswith("CANCELLED")
    assert not [name for name in _names(slurm.conf) if "time.sleep" in name]


def test_stopping_ends_running_jobs_and_every_daemon() -> None:
    with slurm_cluster() as cluster:
        job = cluster.sbatch("--output=/dev/null", "--wrap", STUBBORN)
        wait_for(lambda: _running(cluster, job), JOB_S, f"job {job} to run")
        running = _names(cluster.conf)
    assert {Path(n.split()[0]).name for n in running} >= set(DAEMONS)
    assert [n for n in running if n.startswith("slurmstepd")]  # the job's step daemons
    assert not leftovers(cluster.conf)
    assert not cluster.root.exists()


OWNER = f"""
import sys, time
sys.path.insert(0, {str(TESTS)!r})
from servers import wait_for
from slurm import SlurmCluster
cluster = SlurmCluster().start()
job = cluster.sbatch("--output=/dev/null", "--wrap", {STUBBORN!r})
wait_for(lambda: cluster.states(job).get(job) == "RUNNING", {JOB_S}, "the job")
print(cluster.conf, flush=True)
time.sleep(600)
"""


def test_a_killed_owner_leaves_nothing_behind() -> None:
    """SIGKILL to the process that started the cluster, a job running: its guard cancels the
    job and stops every daemon."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        conf = Path(owner.stdout.readline().strip())
        assert conf.name == "slurm.conf", "the cluster did not start"
        wait_for(lambda: any("time.sleep(300)" in n for n in _names(conf)), JOB_S,
                 "the job's process")
        started = {Path(n.split()[0]).name for n in _names(conf)}
        assert started >= set(DAEMONS)
    finally:
        owner.kill()
        owner.wait()
    wait_for(lambda: not leftovers(conf) and not conf.parent.exists(), TEARDOWN_S,
             "the guard to stop the cluster")
