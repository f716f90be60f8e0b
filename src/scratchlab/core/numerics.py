"""What decides the bits of a trained network besides config and seed: the numeric environment.

A matrix product's rounding depends on how the BLAS splits it, and OpenBLAS splits by thread
count and by the CPU kernel it picked (``Haswell``, ``SkylakeX``...). With
``train.deterministic`` the BLAS computes on one thread while training, so the weights are the
same for any core count (on the same kernel, NumPy/BLAS build and dtype); every run records
the facts that decide it as tags, so a difference can be explained.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy
from threadpoolctl import threadpool_info, threadpool_limits

TAG_PREFIX = "numeric."


@contextlib.contextmanager
def blas_threads(deterministic: bool) -> Iterator[None]:
    """One BLAS thread inside the block when ``deterministic``, else leave the pool as it is."""
    if not deterministic:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numeric_environment(deterministic: bool) -> dict[str, str]:
    """Tags naming everything that decides a run's floating-point results."""
    blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    tags = {
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "deterministic": str(deterministic).lower(),
    }
    if blas:
        pool = blas[0]
        tags.update({
            "blas": str(pool.get("internal_api")),
            "blas_version": str(pool.get("version")),
            "blas_kernel": str(pool.get("architecture")),
            "blas_threads": "1" if deterministic else str(pool.get("num_threads")),
        })
    return {f"{TAG_PREFIX}{key}": value for key, value in tags.items()}
