"""One Optuna study run by 1 and by 2 ``scratchlab tune`` workers against real servers.

Starts PostgreSQL on a free loopback port (databases ``mlflow`` and ``optuna``, fsync on) and an
``mlflow server`` on it with the artifact proxy, as README's "Scaling out" section does, then
runs the same study (small digits trials) twice: once with one worker, once with two workers
started together (a fresh study each time, same command otherwise). It prints trials per
minute for each, the speed-up, and the share of the workers' time spent in tracking and
storage calls: every HTTP request to the tracking server (runs, metrics, artifacts) and every
call of Optuna's RDB storage, timed inside each worker (main thread; the heartbeat thread is
not counted). The last line is one JSON object (``benchmarks/record.py bench_scaleout [--slurm]``
keeps it with the date, machine and commit for the docs). Target on 2 cores: speed-up
>= 1.6.

``--slurm``: the workers are Slurm jobs instead, one single-CPU job each (a job array of 1,
then of 2), on a single-node Slurm cluster on loopback that the benchmark starts
(``tests/slurm.py``: Debian's ``slurmctld slurmd slurm-client slurmdbd munge mariadb-server``);
the wall time runs from ``sbatch`` to the last job's end, so it includes Slurm's scheduling.

SIGTERM and Ctrl-C stop the workers, the Slurm cluster, the tracking server and PostgreSQL
before the benchmark exits (a SIGKILL still stops the Slurm cluster: its guard process).

    .venv/bin/python benchmarks/bench_scaleout.py [--trials 64] [--epochs 20] [--repeats 3]
        [--blas-threads 1] [--quiet-wait 180] [--slurm]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback servers of the tests

TARGET = 1.6
PINNED_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # some machines pin the kernel: not here
STUDY_S = 1800
BUSY_CORES = 0.3  # other processes busier than this during a study: its figures are provisional
# how the tracking server runs: uvicorn (MLflow's default) with one process, since several
# uvicorn processes leave Nagle's algorithm on (see tests/servers.py), or gunicorn's threaded
# workers: two processes, keep-alive connections with TCP_NODELAY
SERVERS = {
    "uvicorn": {"workers": 1, "extra": ()},
    "gunicorn": {"workers": 2, "extra": ("--gunicorn-opts", "--worker-class gthread --threads 4")},
}
TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ inside one worker


class Stopwatch:
    """Seconds spent inside wrapped calls, main thread only, nested calls counted once."""

    def __init__(self) -> None:
        self.seconds, self.calls, self._depth = 0.0, 0, 0

    def wrap(self, func):
        watch = self

        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread() or watch._depth:
                return func(*args, **kwargs)
            watch._depth += 1
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                watch.seconds += time.perf_counter() - start
                watch.calls += 1
                watch._depth -= 1

        return timed


def worker(report: Path, argv: list[str]) -> None:
    """``scratchlab tune`` with stopwatches on HTTP requests and on the Optuna storage."""
    start = time.perf_counter()
    import optuna
    import requests

    tracking, storage = Stopwatch(), Stopwatch()
    requests.sessions.Session.request = tracking.wrap(requests.sessions.Session.request)
    rdb = optuna.storages.RDBStorage
    for name, member in list(vars(rdb).items()):
        if callable(member) and not name.startswith("_"):
            setattr(rdb, name, storage.wrap(member))
    from scratchlab.cli import main

    try:
        main(argv)
    finally:
        own = resource.getrusage(resource.RUSAGE_SELF)
        report.write_text(json.dumps({
            "cpu_s": own.ru_utime + own.ru_stime,
            "wall_s": time.perf_counter() - start, "tracking_s": tracking.seconds,
            "tracking_calls": tracking.calls, "storage_s": storage.seconds,
            "storage_calls": storage.calls,
        }))


# ------------------------------------------------------------------------ the driver


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # minus idle and iowait


def cpu_of(match) -> float:
    """CPU seconds of the live processes ``match(pid, ppid, cmdline)`` accepts, with their
    reaped children (PostgreSQL's backends come and go)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if match(int(entry.name), int(rest[1]), cmdline):
            total += sum(int(x) for x in rest[11:15])
    return total / TICK


def wait_for_quiet(limit_s: float, busy_cores: float = 0.3, window_s: float = 3.0) -> float:
    """Wait (at most ``limit_s``) until the machine was nearly idle for ``window_s``: on a
    shared machine, other people's jobs are the largest error of this benchmark. Returns the
    seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        before = machine_busy_s()
        time.sleep(window_s)
        if (machine_busy_s() - before) / window_s < busy_cores:
            break
    return time.monotonic() - start


class Servers:
    """The servers' own CPU: the mlflow server (and its uvicorn) and the PostgreSQL cluster."""

    def __init__(self, tracking: str, pg) -> None:
        self.port = tracking.rsplit(":", 1)[1]
        pid_file = pg.data / "postmaster.pid"
        self.postmaster = int(pid_file.read_text().split()[0])

    def cpu_s(self) -> float:
        return cpu_of(lambda pid, ppid, cmd: f"--port {self.port}" in cmd  # uvicorn
                      or f"127.0.0.1:{self.port}" in cmd  # gunicorn's master and workers
                      or self.postmaster in (pid, ppid))


def worker_env(tracking: str, blas_threads: int, base: dict[str, str] | None = None
               ) -> dict[str, str]:
    """The workers' environment: the tracking server, their BLAS threads, no pinned kernel."""
    env = {k: v for k, v in (base or os.environ).items() if k not in PINNED_BLAS}
    return {**env, "MLFLOW_TRACKING_URI": tracking,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "OPENBLAS_NUM_THREADS": str(blas_threads), "OMP_NUM_THREADS": str(blas_threads)}


def run_study(n_workers: int, study: str, trials: int, overrides: list[str], tracking: str,
              storage: str, tmp: Path, servers: Servers, blas_threads: int) -> dict:
    env = worker_env(tracking, blas_threads)
    reports = [tmp / f"{study}-{i}.json" for i in range(n_workers)]
    argv = ["tune", "--study", study, "--trials", str(trials), "--storage", storage,
            "--out", str(tmp / study), *overrides]
    logs = [open(tmp / f"{study}-{i}.log", "w") for i in range(n_workers)]  # noqa: SIM115
    busy, server_cpu, children = machine_busy_s(), servers.cpu_s(), os.times()
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(report), *argv],
                              cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
             for report, log in zip(reports, logs, strict=True)]
    try:
        for proc in procs:
            proc.wait(timeout=1800)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    wall = time.perf_counter() - start
    after = os.times()
    workers_cpu = (after.children_user + after.children_system
                   - children.children_user - children.children_system)
    server_cpu = servers.cpu_s() - server_cpu
    others_cpu = max(0.0, machine_busy_s() - busy - workers_cpu - server_cpu)
    failed = [p.args for p in procs if p.returncode != 0]
    if failed:
        raise SystemExit(f"a worker failed; see {tmp}/{study}-*.log")
    per_worker = [json.loads(r.read_text()) for r in reports]
    return figures(trials, wall, per_worker, workers_cpu, server_cpu, others_cpu)


def figures(trials: int, wall: float, per_worker: list[dict], workers_cpu: float,
            server_cpu: float, others_cpu: float) -> dict:
    """One study's figures, from its wall time and its workers' own reports."""
    worker_s = sum(w["wall_s"] for w in per_worker)
    tracking_s = sum(w["tracking_s"] for w in per_worker)
    storage_s = sum(w["storage_s"] for w in per_worker)
    return {
        "workers": len(per_worker), "trials": trials, "wall_s": round(wall, 2),
        "trials_per_min": round(trials / wall * 60, 2),
        "tracking_s": round(tracking_s, 2), "storage_s": round(storage_s, 2),
        "tracking_calls": sum(w["tracking_calls"] for w in per_worker),
        "storage_calls": sum(w["storage_calls"] for w in per_worker),
        "io_share": round((tracking_s + storage_s) / worker_s, 4),
        "workers_cpu_s": round(workers_cpu, 2), "servers_cpu_s": round(server_cpu, 2),
        "others_cpu_s": round(others_cpu, 2),
    }


# -------------------------------------------------------------------------- Slurm mode


def run_slurm_study(cluster, n_workers: int, study: str, trials: int, overrides: list[str],
                    tracking: str, storage: str, tmp: Path, servers: Servers,
                    blas_threads: int) -> dict:
    """The same study, its workers one Slurm job array of ``n_workers`` single-CPU jobs on
    ``cluster`` (a ``tests/slurm.py`` SlurmCluster). The wall time runs from ``sbatch`` to the
    last job's end: waiting for Slurm to start the jobs is part of what a user gets."""
    argv = ["tune", "--study", study, "--trials", str(trials), "--storage", storage,
            "--out", str(tmp / study), *overrides]
    report = shlex.quote(str(tmp / study)) + "-$SLURM_ARRAY_TASK_ID.json"  # expanded in the job
    command = " ".join(["exec", shlex.join([sys.executable, __file__, "--worker"]), report,
                        shlex.join(argv)])
    env = worker_env(tracking, blas_threads, base=cluster.env())
    busy, server_cpu = machine_busy_s(), servers.cpu_s()
    start = time.perf_counter()
    job = cluster.sbatch(f"--array=0-{n_workers - 1}", "--cpus-per-task=1", "--mem=2G",
                         f"--output={tmp}/{study}-%a.log", "--wrap", command, cwd=tmp, env=env)
    cluster.wait_done(job, STUDY_S)
    wall = time.perf_counter() - start
    states = cluster.states(job)
    if set(states.values()) != {"COMPLETED"}:
        raise SystemExit(f"a worker job did not complete ({states}); see {tmp}/{study}-*.log")
    per_worker = [json.loads((tmp / f"{study}-{i}.json").read_text()) for i in range(n_workers)]
    workers_cpu = sum(w["cpu_s"] for w in per_worker)
    server_cpu = servers.cpu_s() - server_cpu
    others_cpu = max(0.0, machine_busy_s() - busy - workers_cpu - server_cpu)
    return figures(trials, wall, per_worker, workers_cpu, server_cpu, others_cpu)


def slurm(enabled: bool):
    """A single-node Slurm cluster for ``--slurm`` (stopped on the way out, jobs cancelled
    first), else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    from slurm import slurm_cluster, slurm_missing

    missing = slurm_missing()
    if missing:
        raise SystemExit(missing)
    return slurm_cluster()


# ------------------------------------------------------------------- the machine, the record


def blas_kernel(env: dict[str, str]) -> str:
    """The OpenBLAS kernel threadpoolctl reports in a process with the workers' environment."""
    probe = ("import numpy, threadpoolctl; print(next((p.get('architecture') for p in "
             "threadpoolctl.threadpool_info() if p.get('user_api') == 'blas'), 'none'))")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60)
    return done.stdout.strip() or "unknown"


def machine(kernel: str) -> dict:
    """What the figures were measured on."""
    from scratchlab.core.numerics import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "blas_kernel": kernel,
            "platform": platform.platform(), "python": platform.python_version()}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (its own figures, not a mix of runs)."""
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def check_study(storage: str, study: str, trials: int, tracking: str) -> None:
    """Every trial complete and recorded once, under one parent: a fast wrong answer is no
    speed-up."""
    import optuna
    from mlflow import MlflowClient

    done = [t for t in optuna.load_study(study_name=study, storage=storage).trials
            if not t.user_attrs.get("skipped")]
    assert [t.state.name for t in done] == ["COMPLETE"] * trials, study
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.optuna_study = '{study}'")
    assert len(runs) == trials + 1 and {r.info.status for r in runs} == {"FINISHED"}, study


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3,
                        help="1-worker and 2-worker studies take turns; medians are reported")
    parser.add_argument("--quiet-wait", type=float, default=180,
                        help="before each run, wait up to this many seconds for the machine to "
                        "be idle (other processes' CPU is reported either way)")
    parser.add_argument("--server", choices=sorted(SERVERS), default="uvicorn",
                        help="uvicorn: mlflow server --workers 1; gunicorn: --workers 2 "
                        "--gunicorn-opts '--worker-class gthread --threads 4'")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="OPENBLAS/OMP_NUM_THREADS of every worker, in both configurations "
                        "(one worker per core: 1)")
    parser.add_argument("--slurm", action="store_true",
                        help="workers as single-CPU Slurm jobs on a single-node cluster the "
                        "benchmark starts on loopback (tests/slurm.py)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # unwind: stop workers, cluster and servers
    from servers import mlflow_server, pg_bin_dir, postgres

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL not found: apt-get install postgresql")
    overrides = [f"train.epochs={args.epochs}", "train.progress=false",
                 "tracking.log_model=false"]
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as name:
        tmp = Path(name)
        (tmp / "artifacts").mkdir()
        with postgres(bin_dir, fsync=True) as pg:
            backend, storage = pg.create_database("mlflow"), pg.create_database("optuna")
            server = SERVERS[args.server]
            with mlflow_server(backend, tmp / "artifacts", tmp / "mlflow.log",
                               server["workers"], server["extra"]) as tracking:
                servers = Servers(tracking, pg)
                runs: dict[int, list[dict]] = {1: [], 2: []}
                with slurm(args.slurm) as cluster:
                    kernel = blas_kernel(worker_env(tracking, args.blas_threads))
                    for repeat in range(args.repeats):
                        for n in (1, 2):
                            study = f"bench-{n}-workers-{repeat}"
                            wait_for_quiet(args.quiet_wait)
                            study_args = (n, study, args.trials, overrides, tracking, storage,
                                          tmp, servers, args.blas_threads)
                            runs[n].append(run_slurm_study(cluster, *study_args) if cluster
                                           else run_study(*study_args))
                            check_study(storage, study, args.trials, tracking)
    results = [median_run(runs[n]) for n in (1, 2)]
    one, two = results
    speedup = two["trials_per_min"] / one["trials_per_min"]
    mode = "slurm" if args.slurm else "local"
    how = ("single-CPU Slurm jobs (one job array, wall from sbatch to the last job's end)"
           if args.slurm else "local processes")
    print(f"study of {args.trials} digits trials ({' '.join(overrides)}), workers as {how}, "
          f"PostgreSQL-backed mlflow server ({args.server}), PostgreSQL study storage, "
          f"{os.cpu_count()} cores, {args.blas_threads} BLAS thread(s) per worker (OpenBLAS "
          f"kernel {kernel}); median of {args.repeats} runs each, 1 and 2 workers taking turns")
    print(f"{'workers':>7} {'wall s':>7} {'trials/min':>10} {'tracking s':>10} "
          f"{'storage s':>9} {'tracking+storage share':>22} {'CPU s: workers':>14} "
          f"{'servers':>7} {'other processes':>15}")
    for r in results:
        print(f"{r['workers']:>7} {r['wall_s']:>7.1f} {r['trials_per_min']:>10.1f} "
              f"{r['tracking_s']:>10.1f} {r['storage_s']:>9.1f} {r['io_share']:>22.1%} "
              f"{r['workers_cpu_s']:>14.1f} {r['servers_cpu_s']:>7.1f} "
              f"{r['others_cpu_s']:>15.1f}")
    print(f"speed-up with 2 workers: {speedup:.2f}x (target >= {TARGET}: "
          f"{'met' if speedup >= TARGET else 'NOT met'})")
    others = max(r["others_cpu_s"] / r["wall_s"] for r in results)  # cores others kept busy
    if others > BUSY_CORES:
        print(f"other processes kept {others:.1f} cores busy on average: these figures are "
              "provisional, measure again on a quiet machine")
    result = {"mode": mode, "trials": args.trials, "epochs": args.epochs,
              "repeats": args.repeats, "blas_threads": args.blas_threads,
              "server": args.server, "median": results, "all": runs,
              "speedup": round(speedup, 3), "speedup_target": TARGET,
              "speedup_met": speedup >= TARGET, "others_busy_cores": round(others, 2),
              "provisional": others > BUSY_CORES,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(kernel)}
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), sys.argv[3:])
    else:
        try:
            main()
        except KeyboardInterrupt as exc:  # everything it started is stopped by now
            print(f"interrupted ({exc or 'Ctrl-C'}): workers, Slurm cluster and servers "
                  "stopped", file=sys.stderr)
            sys.exit(130)
