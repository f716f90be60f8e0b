"""Benchmark contenders in worker processes of their own, timed one at a time.

Each worker has its own copy of the data and its own BLAS/OpenMP thread pools, so no library's
idle threads slow another's run. Workers are spawned (fresh interpreters) by a parent that
holds no data: on Linux a spawned child's ``ru_maxrss`` starts at its parent's RSS at spawn.
"""

import multiprocessing
import os
import resource
import sys
import time
import traceback


def cpu_seconds() -> float:
    """CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:8]]
    return (sum(ticks[:3]) + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def _serve(setup, setup_args, conn) -> None:
    """``run, data = setup(*setup_args)``, then answer each job with ``run(data, *job)``
    plus ``ru_maxrss`` (MB) and the CPU seconds the job took."""
    try:
        run, data = setup(*setup_args)
        conn.send("ready")
        while (job := conn.recv()) is not None:
            cpu = cpu_seconds()
            result = run(data, *job)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            conn.send((*result, rss_mb, cpu_seconds() - cpu))
    except Exception:  # report, so the parent fails with the worker's traceback
        conn.send(("error", traceback.format_exc()))


class Worker:
    """One contender in its own spawned process; ``setup`` must be importable by name."""

    def __init__(self, name: str, setup, setup_args: tuple) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(setup, setup_args, child), daemon=True)
        self.process.start()
        self._check(self.conn.recv())  # "ready"

    def _check(self, reply):
        if isinstance(reply, tuple) and reply[0] == "error":
            sys.exit(f"{self.name} worker failed:\n{reply[1]}")
        return reply

    def run(self, *job):
        """``(*result, rss_mb, others)``: ``others`` = CPU cores kept busy by other processes
        during the job, on average (the machine's busy time minus the worker's own)."""
        busy, wall = busy_seconds(), time.perf_counter()
        self.conn.send(job)
        *result, rss_mb, cpu = self._check(self.conn.recv())
        others = (busy_seconds() - busy - cpu) / (time.perf_counter() - wall)
        return (*result, rss_mb, max(others, 0.0))

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(timeout=30)
