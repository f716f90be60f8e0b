"""A real single-node Slurm cluster on loopback, for the tests and the benchmark (no tests here).

:class:`SlurmCluster` starts, in a private temp dir with a ``slurm.conf`` of its own: ``munged``
with its own key, MariaDB and ``slurmdbd`` (accounting: without ``sacct`` submitit waits forever
on a cancelled or killed job), ``slurmctld`` and ``slurmd`` (node ``localhost``, every CPU of
this machine), each in the foreground in its own session, every port a free one on 127.0.0.1;
then waits (bounded) until the node is idle. Debian's ``slurmctld slurmd slurm-client slurmdbd
munge mariadb-server`` packages (Slurm 22.05) are all it needs.

Stopping is the job of a guard process started first (``python tests/slurm.py --guard``): it
waits for its stdin to close, which happens when :meth:`SlurmCluster.stop` closes it, and also
when the process that started the cluster dies in any way (a failed test, Ctrl-C, SIGKILL).
Then it cancels every job (running jobs outlive the daemons), waits for their processes to end,
stops the daemons and removes the directory. Everything the cluster started, jobs included,
carries ``SLURM_CONF=<its slurm.conf>`` in its environment or works in its directory: that is
how the guard finds them and how :func:`leftovers` proves nothing is left behind.

Measured pitfalls, kept here: without ``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny``
the daemons (and ``srun``) listen on every interface; the default ``KillWait=30`` delays every
cancellation by 30 s; munge wants its key 0400 and a socket directory everyone can traverse;
slurmctld reaches slurmdbd through munge's default socket unless ``AccountingStoragePass``
names ours; a requeued job waits ``cred_expire`` (120 s by default) before it may start again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from servers import free_port, wait_for

DAEMONS = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")  # the order they stop in
CLIENTS = ("sbatch", "squeue", "scancel", "sacct", "scontrol", "sinfo")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "slurm.md"
SBIN = os.pathsep.join(("/usr/sbin", "/sbin"))
SLURM_MISSING = ("Slurm not found: apt-get install slurmctld slurmd slurm-client slurmdbd munge "
                 "mariadb-server (Debian/Ubuntu; .ci/run does)")
PARTITION = "debug"
KILL_WAIT_S = 5  # SIGTERM -> SIGKILL on scancel, time limit and requeue (Slurm's default: 30)
REQUEUE_DELAY_S = 5  # cred_expire: how long a requeued job waits (Slurm's default: 120)
START_S = 60
COMMAND_S = 30
STOP_S = 10
SHM, SHM_NEEDED = "/dev/shm", 256 * 2**20  # MariaDB's files take ~35 MB
TEARDOWN_S = 120  # the guard: cancel jobs, let them end (KillWait), stop the daemons


def slurm_missing() -> str | None:
    """Why no cluster can start here, or None."""
    path = os.pathsep.join((os.environ.get("PATH", ""), SBIN))
    if any(shutil.which(p, path=path) is None for p in (*DAEMONS, *CLIENTS)):
        return SLURM_MISSING
    if os.geteuid() != 0:  # slurmd starts jobs as their user: it needs root, as in CI
        return "the test Slurm cluster runs its daemons as root"
    return None


def _scratch_dir() -> str | None:
    """/dev/shm when it has room: a tmpfs ignores fsync, and slurmdbd's first start (~30 tables
    created) takes 0.8 s there instead of 3 s on disk. Else the temp dir."""
    with contextlib.suppress(OSError):
        if shutil.disk_usage(SHM).free > SHM_NEEDED and os.access(SHM, os.W_OK):
            return SHM
    return None


def _ours(conf: Path) -> list[psutil.Process]:
    """Every live process of the cluster of ``conf``: its environment names ``conf`` (daemons,
    jobs), or it works in the cluster's directory (slurmstepd, which clears its environment)."""
    found, root = [], str(conf.parent)
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("SLURM_CONF") == str(conf) or proc.cwd().startswith(root):
                found.append(proc)
    return found


def leftovers(conf: Path) -> list[str]:
    """What of the cluster of ``conf`` still runs (daemons, step daemons, jobs), as text."""
    described = []
    for proc in _ours(conf):
        with contextlib.suppress(psutil.Error):
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
    return described


def job_of(pid: int) -> str | None:
    """The Slurm job a process runs in (``123``, or ``123_4`` for an array task), or None."""
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        return None
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def listening(conf: Path) -> list[tuple[str, str, int]]:
    """(program, address, port) of every TCP socket the cluster's processes listen on."""
    pids = {p.pid: p for p in _ours(conf)}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            with contextlib.suppress(psutil.Error):
                found.append((pids[conn.pid].name(), conn.laddr.ip, conn.laddr.port))
    return found


def _signal(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _wait_gone(conf: Path, timeout_s: float, keep=lambda p: True) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while (left := [p for p in _ours(conf) if keep(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _name(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return proc.name()
    return ""


def teardown(root: Path, logs: Path | None) -> None:
    """Cancel every job, wait for the jobs' processes, stop the daemons, remove ``root``."""
    conf = root / "slurm.conf"
    with contextlib.suppress(Exception):
        cancel_all(conf)
    jobs_left = _wait_gone(conf, KILL_WAIT_S + STOP_S,
                           keep=lambda p: _name(p) not in (*DAEMONS, "slurmscriptd"))
    _signal(jobs_left, signal.SIGKILL)  # the daemons were too far gone to end them
    for name in DAEMONS:  # slurmd before slurmctld ..., munged last: they talk through it
        _signal([p for p in _ours(conf) if _name(p) == name], signal.SIGTERM)
        _wait_gone(conf, STOP_S, keep=lambda p, n=name: _name(p) == n)
    _signal(_wait_gone(conf, STOP_S), signal.SIGKILL)
    _wait_gone(conf, STOP_S)
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        for log in root.glob("*.log"):
            shutil.copy2(log, logs / log.name)
    shutil.rmtree(root, ignore_errors=True)


def cancel_all(conf: Path) -> None:
    """``scancel`` every job of the cluster of ``conf`` (pending, running, array tasks)."""
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{os.environ['PATH']}:{SBIN}"}
    jobs = subprocess.run(["squeue", "-h", "-o", "%A"], env=env, capture_output=True,
                          text=True, timeout=COMMAND_S, check=True).stdout.split()
    if jobs:
        subprocess.run(["scancel", *sorted(set(jobs))], env=env, timeout=COMMAND_S, check=True)


def guard(root: Path, logs: Path | None) -> None:
    """Wait for stdin to close (the owner stopped the cluster, or died), then tear it down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner's Ctrl-C is the owner's
    sys.stdin.buffer.read()
    teardown(root, logs)


class SlurmCluster:
    """munged, MariaDB, slurmdbd, slurmctld and slurmd for one node, on 127.0.0.1 only."""

    def __init__(self, logs: Path | None = None) -> None:
        self.logs = logs  # where the daemons' logs are copied before the directory goes
        # not under pytest's tmp_path: munge wants every directory above its socket traversable,
        # and a unix socket path is at most 107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="scratchlab-slurm-", dir=_scratch_dir()))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.cluster = f"scratchlab{os.getpid()}"
        self.cpus = os.cpu_count() or 1
        self.memory_mb = int(psutil.virtual_memory().total / 2**20 * 0.8)
        self.ports = {k: free_port() for k in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
        self.procs: dict[str, subprocess.Popen] = {}
        self.guard: subprocess.Popen | None = None

    # ----------------------------------------------------------------------- use

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for the Slurm commands and what they submit (sbatch exports it)."""
        venv_bin = str(Path(sys.executable).parent)
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra,
                "PATH": os.pathsep.join((venv_bin, os.environ.get("PATH", ""), SBIN))}

    def run(self, *command: str, check: bool = True) -> str:
        """A Slurm command against this cluster; its stdout."""
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True,
                              timeout=COMMAND_S)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def sbatch(self, *options: str, cwd: Path | None = None, env: dict | None = None) -> str:
        """Submit (``sbatch --parsable``); the job id."""
        done = subprocess.run(["sbatch", "--parsable", *options], env=env or self.env(),
                              cwd=cwd, capture_output=True, text=True, timeout=COMMAND_S)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(options)}: {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def states(self, job: str) -> dict[str, str]:
        """Accounting's view of ``job`` (array tasks apart): {job id: state}."""
        out = self.run("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job)
        return dict(line.split("|", 1) for line in out.splitlines())

    def queued(self) -> list[str]:
        """Jobs pending, running or completing (``squeue``)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def wait_done(self, job: str, timeout_s: float) -> None:
        """Until ``job`` (every task of an array) has left the queue, and accounting says so:
        slurmctld sends a job's end to slurmdbd asynchronously, so ``sacct`` can still show
        RUNNING after ``squeue`` has let the job go."""
        wait_for(lambda: not self.run("squeue", "-h", "-j", job, "-o", "%i", check=False).split(),
                 timeout_s, f"Slurm job {job} to end")
        wait_for(lambda: not set(self.states(job).values()) & {"PENDING", "RUNNING", "COMPLETING"},
                 timeout_s, f"Slurm accounting to record the end of job {job}")

    def wait_idle(self, timeout_s: float = START_S) -> None:
        """Until no job is left and the node takes work."""
        wait_for(lambda: not self.queued() and self.node_state() == "idle", timeout_s,
                 "the Slurm node to be idle")

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()

    # ------------------------------------------------------------------ life

    def start(self) -> SlurmCluster:
        missing = slurm_missing()
        if missing:
            raise RuntimeError(missing)
        self.guard = subprocess.Popen(  # first: whatever starts after it is covered
            [sys.executable, __file__, "--guard", str(self.root), str(self.logs or "")],
            stdin=subprocess.PIPE, start_new_session=True)
        self._write_conf()
        self._start_munge()
        self._spawn("mariadbd", "--no-defaults", f"--datadir={self.root / 'db'}",
                    f"--socket={self.root / 'mysqld.sock'}", "--bind-address=127.0.0.1",
                    f"--port={self.ports['mariadb']}", "--user=root", "--skip-grant-tables",
                    f"--log-error={self.root / 'mariadb.log'}", "--skip-log-bin",
                    "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
                    f"--pid-file={self.root / 'mariadb.pid'}",
                    # a throwaway database: no fsync (slurmdbd creates ~30 tables first)
                    "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                    "--innodb-flush-method=O_DIRECT_NO_FSYNC", "--sync-frm=0")
        self._wait_port("mariadb", "mariadbd")
        self._spawn("slurmdbd", "-D")
        self._wait_port("slurmdbd", "slurmdbd")
        self._spawn("slurmctld", "-D", "-i")
        self._wait_port("slurmctld", "slurmctld")
        self._spawn("slurmd", "-D", "-N", "localhost")
        wait_for(lambda: self.node_state() == "idle", START_S, "the Slurm node to be idle",
                 alive=self._alive)
        return self

    def stop(self) -> None:
        """Stop everything (through the guard); fail if anything the cluster ran is left."""
        if self.guard is None:  # never started (or stopped already): only the directory
            shutil.rmtree(self.root, ignore_errors=True)
            return
        with contextlib.suppress(OSError):
            self.guard.stdin.close()
        try:
            self.guard.wait(timeout=TEARDOWN_S)
        except subprocess.TimeoutExpired:
            self.guard.kill()
            teardown(self.root, self.logs)
        for proc in self.procs.values():  # reap them (the guard ended them)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_S)
        left = leftovers(self.conf)
        _signal(_ours(self.conf), signal.SIGKILL)
        self.guard = None
        if left:
            raise AssertionError("the Slurm cluster left processes behind:\n" + "\n".join(left))

    def _alive(self) -> bool:
        return all(proc.poll() is None for proc in self.procs.values())

    def _spawn(self, program: str, *args: str) -> None:
        with open(self.root / f"{program}.out", "ab") as out:
            self.procs[program] = subprocess.Popen(
                [program, *args], env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)

    def _wait_port(self, key: str, program: str) -> None:
        def accepts() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.ports[key])) == 0

        wait_for(accepts, START_S, f"{program} on 127.0.0.1:{self.ports[key]} "
                 f"(see {self.root / program}.out)", alive=self._alive, poll_s=0.05)

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", "-F", f"--socket={munge / 'munge.socket'}",
                    f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
                    f"--seed-file={munge / 'munged.seed'}", "--num-threads=4")
        wait_for(lambda: (munge / "munge.socket").exists(), START_S, "munged",
                 alive=self._alive, poll_s=0.05)

    def _write_conf(self) -> None:
        r, socket_path = self.root, self.root / "munge" / "munge.socket"
        auth = f"socket={socket_path},cred_expire={REQUEUE_DELAY_S}"
        lines = [
            f"ClusterName={self.cluster}", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ports['slurmctld']}", f"SlurmdPort={self.ports['slurmd']}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo={auth}",
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            f"StateSaveLocation={r / 'ctld'}", f"SlurmdSpoolDir={r / 'slurmd'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}", f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory",
            "MpiDefault=none", "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost", f"AccountingStoragePort={self.ports['slurmdbd']}",
            f"AccountingStoragePass={socket_path}",  # else slurmctld uses munge's default socket
            f"KillWait={KILL_WAIT_S}", "ReturnToService=2", "MailProg=/bin/true",
            # the main scheduler every 2 s (default 60): a requeued job starts when it may
            "SchedulerParameters=sched_interval=2",
            f"PlugStackConfig={r / 'plugstack.conf'}",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"DefMemPerCPU={self.memory_mb // self.cpus // 2}",  # a job without --mem: not all
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        dbd = self.root / "slurmdbd.conf"  # slurmdbd reads it beside slurm.conf; 0600 or no start
        dbd.write_text("\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={socket_path}",
            "DbdHost=localhost", "DbdAddr=127.0.0.1", "CommunicationParameters=NoInAddrAny",
            f"DbdPort={self.ports['slurmdbd']}",
            "SlurmUser=root", "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1", f"StoragePort={self.ports['mariadb']}",
            "StorageUser=root", "StorageLoc=slurm_acct_db",
            f"LogFile={r / 'slurmdbd.log'}", f"PidFile={r / 'slurmdbd.pid'}",
        ]) + "\n")
        dbd.chmod(0o600)
        (r / "plugstack.conf").write_text("")
        for folder in ("ctld", "slurmd", "db"):
            (r / folder).mkdir()


@contextlib.contextmanager
def slurm_cluster(logs: Path | None = None) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(logs)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# ------------------------------------------------------- what the jobs run, and where they meet


@dataclass
class ClusterServers:
    """What every job reaches: the MLflow tracking server and the Optuna storage."""

    tracking: str
    storage: str


def tune_script() -> str:
    """The job script docs/slurm.md gives lab users: its ``#!/bin/bash`` block that runs
    ``scratchlab tune`` (the tests submit exactly that)."""
    blocks = re.findall(r"```bash\n(#!/bin/bash\n.*?)```", DOCS.read_text(), re.S)
    [script] = [b for b in blocks if "#SBATCH" in b and "scratchlab tune" in b]
    return script


def submit_tune(cluster: SlurmCluster, servers: ClusterServers, workdir: Path, study: str,
                trials: int, *args: str, sbatch: tuple[str, ...] = ()) -> str:
    """``sbatch [options] tune.sbatch [args]`` from ``workdir``: the docs' script, with the
    test partition and output in ``workdir``; ``sbatch`` options override the script's
    (``--array=0-1``). The job id."""
    script = workdir / "tune.sbatch"
    script.write_text(tune_script())
    env = cluster.env(MLFLOW_TRACKING_URI=servers.tracking, OPTUNA_STORAGE=servers.storage,
                      STUDY=study, TRIALS=str(trials))
    return cluster.sbatch(f"--partition={PARTITION}", f"--output={workdir}/slurm-%A_%a.out",
                          *sbatch, str(script), *args, cwd=workdir, env=env)


if __name__ == "__main__" and sys.argv[1:2] == ["--guard"]:
    guard(Path(sys.argv[2]), Path(sys.argv[3]) if sys.argv[3:4] != [""] else None)
