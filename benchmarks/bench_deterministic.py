"""The speed cost of ``train.deterministic`` (one BLAS thread while training and scoring).

Trains the same config with the switch on and off, interleaved (on, off, on, off...) so load
from other processes hits both alike, and prints the median time of each and their ratio, for
three nets: the default digits net (64-100-10, batch 32, the pipeline's default), the seed
article's 784-100-10 MNIST net (batch 100) and ``mnist_best`` (784-512-256-10, batch 128), the
last two on MNIST-shaped synthetic data (``--n`` rows of 784 pixels). "off" lets OpenBLAS use
its default pool (every core); the machine's BLAS facts are printed with the figures.

    .venv/bin/python benchmarks/bench_deterministic.py [--repeats 5] [--n 20000]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info

from scratchlab.api import config, load_data
from scratchlab.data.splits import Split, Splits
from scratchlab.trainer import train_network

CASES = {
    "digits_default": ["train.epochs=10"],
    "mnist_two_layer": ["model.hidden=[100]", "optimizer=sgd", "optimizer.lr=0.1",
                        "train.epochs=2", "train.batch_size=100"],
    "mnist_best": ["model=mlp", "model.hidden=[512,256]", "model.dropout=0.3",
                   "optimizer=adam", "optimizer.lr=0.001", "train.epochs=1",
                   "train.batch_size=128"],
}


def mnist_shaped(n: int, seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    Y = np.eye(10, dtype=np.float32)[labels]
    cut = [0, int(n * 0.8), int(n * 0.9), n]
    parts = [Split(X[a:b], labels[a:b], Y[a:b]) for a, b in zip(cut, cut[1:], strict=False)]
    return Splits(*parts, task="classification", class_names=[str(d) for d in range(10)])


def timed(overrides: list[str], splits: Splits, deterministic: bool) -> float:
    cfg = config(*overrides, "train.progress=false",
                 f"train.deterministic={str(deterministic).lower()}")
    start = time.perf_counter()
    train_network(cfg, splits)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000, help="MNIST-shaped rows")
    args = parser.parse_args()
    blas = next((p for p in threadpool_info() if p.get("user_api") == "blas"), {})
    print(f"BLAS: {blas.get('internal_api')} {blas.get('version')}, kernel "
          f"{blas.get('architecture')}, default pool {blas.get('num_threads')} threads")
    digits = load_data(config())
    synthetic = mnist_shaped(args.n)
    out: dict[str, float | str | int] = {
        "blas": f"{blas.get('internal_api')} {blas.get('version')}",
        "kernel": str(blas.get("architecture")), "threads_off": int(blas.get("num_threads", 0)),
    }
    print(f"{'case':<16} {'on (1 thread) s':>16} {'off s':>8} {'on/off':>7}")
    for case, overrides in CASES.items():
        splits = digits if case == "digits_default" else synthetic
        timed(overrides, splits, True)  # warm-up: imports, page faults, thread pool start
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for deterministic in (True, False):
                times[deterministic].append(timed(overrides, splits, deterministic))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        print(f"{case:<16} {on:>16.3f} {off:>8.3f} {on / off:>6.2f}x")
        out.update({f"{case}_on_s": round(on, 4), f"{case}_off_s": round(off, 4),
                    f"{case}_ratio": round(on / off, 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
