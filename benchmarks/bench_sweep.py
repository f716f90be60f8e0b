"""Sweep overhead (Hydra + MLflow per job, training excluded) and MLflow's share of training.

1. A 5-job lr sweep on digits, 2 epochs each, joblib launcher with 2 workers, into a fresh
   SQLite store: wall time (target < 60 s), and per-job overhead = what the sweep costs beyond
   the same five trainings done in-process without Hydra or MLflow.
2. A 10-epoch run of the 784-100-10 net on MNIST-shaped synthetic data (60000x784): ``fit``
   with ``on_epoch_end=EpochLogger`` (a real SQLite store) vs without; the logger's own time is
   also measured directly, since two fits differ by more noise than ten ``log_batch`` calls.
   Target: logging <= 5% of the run.

    .venv/bin/python benchmarks/bench_sweep.py [--n 60000] [--epochs 10]

The last line printed is one JSON object with the figures.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from scratchlab.config import compose
from scratchlab.experiment import EpochLogger, _plain, network_spec, prepare_data
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import make_optimizer
from scratchlab.nn.training import fit
from scratchlab.tracking.store import connect

LRS = ("0.001", "0.01", "0.1", "1", "10")
SWEEP_EPOCHS = 2
WORKERS = 2


def sweep_wall(tmp: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "scratchlab.train", "-m", "+sweep=lr",
               "hydra/launcher=joblib", f"hydra.launcher.n_jobs={WORKERS}",
               f"train.epochs={SWEEP_EPOCHS}", "train.progress=false",
               "tracking.log_model=false", f"hydra.sweep.dir={tmp / 'sweep'}"]
    start = time.perf_counter()
    subprocess.run(command, cwd=tmp, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def bare_training(lr: str) -> float:
    """The sweep job's training alone: same config, no Hydra app, no MLflow."""
    cfg = compose([f"optimizer.lr={lr}", f"train.epochs={SWEEP_EPOCHS}", "train.progress=false",
                   "train.divergence_factor=1.25"])
    splits, _ = prepare_data(cfg)
    rng = np.random.default_rng(0)
    net = build_network(network_spec(cfg, splits), rng)
    start = time.perf_counter()
    fit(net, make_optimizer(**_plain(cfg["optimizer"])), splits.train.X, splits.train.Y,
        epochs=SWEEP_EPOCHS, batch_size=32, rng=rng, divergence_factor=1.25, progress=False,
        validation_data=(splits.val.X, splits.val.Y))
    return time.perf_counter() - start


class TimedLogger:
    """EpochLogger plus a stopwatch around each call."""

    def __init__(self, inner: EpochLogger) -> None:
        self.inner, self.seconds = inner, 0.0

    def __call__(self, epoch: int, logs: dict) -> None:
        start = time.perf_counter()
        self.inner(epoch, logs)
        self.seconds += time.perf_counter() - start


def mnist_fit(n: int, epochs: int, logger=None) -> float:
    rng = np.random.default_rng(0)
    X = rng.random((n, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    n_val = n // 10
    net = build_network(NetworkSpec(784, 10, (100,), "sigmoid", "softmax", "cross_entropy"), rng)
    start = time.perf_counter()
    fit(net, make_optimizer(name="momentum", lr=0.3, momentum=0.9), X[n_val:], Y[n_val:],
        epochs=epochs, batch_size=32, rng=rng, validation_data=(X[:n_val], Y[:n_val]),
        on_epoch_end=logger, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        wall = sweep_wall(tmp)
        train_s = sum(bare_training(lr) for lr in LRS)
        overhead = (wall * WORKERS - train_s) / len(LRS)
        print(f"lr sweep, {len(LRS)} jobs x {SWEEP_EPOCHS} epochs, joblib x{WORKERS}: "
              f"{wall:.1f} s wall (target < 60 s); training alone {train_s:.1f} s; "
              f"overhead {overhead:.2f} worker-s per job")

        experiment_id = connect(f"sqlite:///{tmp / 'bench' / 'mlflow.db'}", "bench")
        run = mlflow.MlflowClient().create_run(experiment_id)
        bare = mnist_fit(args.n, args.epochs)
        timed = TimedLogger(EpochLogger(run.info.run_id))
        logged = mnist_fit(args.n, args.epochs, timed)
        share = timed.seconds / logged
        print(f"MNIST-shaped fit, {args.epochs} epochs: {bare:.1f} s bare, {logged:.1f} s "
              f"logged; EpochLogger {timed.seconds * 1000:.0f} ms = {share:.2%} (target <= 5%)")
    print(json.dumps({
        "sweep_jobs": len(LRS), "sweep_workers": WORKERS, "sweep_wall_s": round(wall, 2),
        "sweep_training_s": round(train_s, 2), "overhead_per_job_s": round(overhead, 2),
        "sweep_under_60s": wall < 60,
        "mnist_fit_s": round(bare, 2), "mnist_fit_logged_s": round(logged, 2),
        "logging_s": round(timed.seconds, 3), "logging_share": round(share, 4),
        "logging_share_by_difference": round((logged - bare) / bare, 4),
        "logging_under_5pct": share <= 0.05,
    }))


if __name__ == "__main__":
    main()
