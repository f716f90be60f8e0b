"""How fast a run starts and how little a sweep adds per job, and MLflow's share of training.

1. One digits run as a user types it (``python -m scratchlab.train train.epochs=3``) into an
   existing SQLite store: wall time (target <= 5 s), and where it goes, measured by the same
   steps timed one by one in a fresh process: interpreter, imports, store, data, training,
   logging (run, params, per-epoch metrics, history, reports), model.
2. An in-process Hydra sweep (basic launcher) of N jobs against one of 1 job: the per-job
   overhead is the extra wall time per extra job minus that job's own training
   (target <= 0.5 s).
3. A 10-epoch 784-100-10 fit on MNIST-shaped data with the MLflow epoch logger: the logger's
   share of the run (target <= 5%).

    .venv/bin/python benchmarks/bench_sweep.py [--jobs 6] [--repeats 3]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 3
LRS = ("0.1", "0.05", "0.2", "0.3", "0.15", "0.08", "0.25", "0.12")

# The steps of `python -m scratchlab.train` (train.py -> job.run_config), timed one by one.
STEPS = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
from pathlib import Path
import scratchlab.train, scratchlab.pipeline.job, scratchlab.pipeline.plots  # the app's imports
import mlflow
from scratchlab.config import compose, validate
from scratchlab.data.registry import data_config
mark("imports")
config = validate(compose(sys.argv[2:]), data=data_config)
from scratchlab.tracking.store import connect
connect(config.tracking.uri, config.tracking.experiment)
mark("store")
from scratchlab.pipeline.prepare import prepare_data
splits, manifest = prepare_data(config)
mark("data")
from scratchlab.pipeline.evaluation import record_evaluation, evaluate, write_reports
from scratchlab.pipeline.record import record_training, title, tracked_run
from scratchlab.pipeline.training import train
from scratchlab.tracking.recorder import EpochMetrics
out = Path(sys.argv[1])
with tracked_run(config, manifest, out, splits=splits) as recorder:
    mark("logging")
    trained = train(config, splits)
    mark("training")
    for epoch in range(trained.history.epochs_run):
        EpochMetrics(recorder).on_epoch_end(epoch, {k: v[epoch] for k, v in
                                            trained.history.history.items()}, None, None)
    record_training(recorder, config, trained.net, trained.history, out)
    evaluation = evaluate(trained.net, splits, title(config))
    files = write_reports(evaluation, out)
    record_evaluation(recorder, evaluation, files, trained.net, None)
    mark("logging")
    from scratchlab.tracking.model import log_pyfunc_model
    log_pyfunc_model(trained.net, "model", splits.test.X[:5])
    mark("model")
mark("logging")
totals = {}
for (_, before), (name, at) in zip(marks, marks[1:]):
    totals[name] = totals.get(name, 0.0) + at - before
print(json.dumps(totals))
"""


def _env(store: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def one_run(tmp: Path, repeats: int) -> tuple[float, dict[str, float]]:
    """Median wall of the CLI run, and the median of each step's time in a fresh process."""
    env = _env(tmp / "store")
    app = [sys.executable, "-m", "scratchlab.train", f"train.epochs={EPOCHS}",
           "train.progress=false"]
    _timed([*app, f"hydra.run.dir={tmp / 'warm'}"], tmp, env)  # the store exists from here
    walls = [_timed([*app, f"hydra.run.dir={tmp / f'run{i}'}"], tmp, env) for i in range(repeats)]
    steps = []
    for i in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", STEPS, str(tmp / f"steps{i}"),
                               f"train.epochs={EPOCHS}", "train.progress=false"],
                              cwd=tmp, env=env, check=True, capture_output=True, text=True)
        step = json.loads(done.stdout.strip().splitlines()[-1])
        step["interpreter"] = time.perf_counter() - start - sum(step.values())
        steps.append(step)
    return statistics.median(walls), {k: statistics.median(s[k] for s in steps) for k in steps[0]}


def sweep_overhead(tmp: Path, jobs: int, repeats: int) -> tuple[float, float, float]:
    """(wall of 1 job, wall of `jobs` jobs, training time of one job), medians."""
    env = _env(tmp / "store")

    def sweep(n: int, i: int) -> float:
        return _timed([sys.executable, "-m", "scratchlab.train", "-m",
                       f"optimizer.lr={','.join(LRS[:n])}", f"train.epochs={EPOCHS}",
                       "train.progress=false", f"hydra.sweep.dir={tmp / f'sweep{n}-{i}'}"],
                      tmp, env)

    one = statistics.median(sweep(1, i) for i in range(repeats))
    many = statistics.median(sweep(jobs, i) for i in range(repeats))
    from scratchlab.api import config, load_data, train

    times = []
    for lr in LRS[:jobs]:
        cfg = config(f"optimizer.lr={lr}", f"train.epochs={EPOCHS}", "train.progress=false")
        splits = load_data(cfg)
        start = time.perf_counter()
        train(cfg, splits)
        times.append(time.perf_counter() - start)
    return one, many, statistics.mean(times)


def logger_share(tmp: Path, n: int, epochs: int) -> tuple[float, float]:
    """(seconds in the epoch logger, seconds of the whole fit) for a 784-100-10 net."""
    import numpy as np

    from scratchlab.nn import EpochEnd, NetworkSpec, build_network, fit, make_optimizer
    from scratchlab.tracking.recorder import EpochMetrics, RunRecorder
    from scratchlab.tracking.store import connect

    experiment = connect(f"sqlite:///{tmp / 'logger' / 'mlflow.db'}", "bench")
    import mlflow

    run = mlflow.MlflowClient().create_run(experiment)
    logger, spent = EpochMetrics(RunRecorder(run.info.run_id)), [0.0]

    def timed_log(epoch: int, logs: dict) -> None:
        start = time.perf_counter()
        logger.on_epoch_end(epoch, logs, None, None)
        spent[0] += time.perf_counter() - start

    rng = np.random.default_rng(0)
    X = rng.random((n, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    net = build_network(NetworkSpec(784, 10, (100,)), rng)
    start = time.perf_counter()
    fit(net, make_optimizer("momentum", 0.3, momentum=0.9), X[n // 10:], Y[n // 10:],
        epochs=epochs, batch_size=32, rng=rng, validation_data=(X[: n // 10], Y[: n // 10]),
        callbacks=[EpochEnd(timed_log)], progress=False)
    return spent[0], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6, choices=range(2, len(LRS) + 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=60000, help="rows of the MNIST-shaped fit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        wall, steps = one_run(tmp, args.repeats)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
        print(f"one digits run, {EPOCHS} epochs: {wall:.2f} s wall (target <= 5 s); "
              f"steps in s: {parts}")
        one, many, training = sweep_overhead(tmp, args.jobs, args.repeats)
        overhead = (many - one) / (args.jobs - 1) - training
        print(f"in-process sweep: 1 job {one:.2f} s, {args.jobs} jobs {many:.2f} s; training "
              f"{training:.3f} s/job; overhead {overhead:.2f} s per job (target <= 0.5 s)")
        logging_s, fit_s = logger_share(tmp, args.n, 10)
        print(f"MNIST-shaped fit, 10 epochs: {fit_s:.1f} s, epoch logger {logging_s * 1000:.0f} "
              f"ms = {logging_s / fit_s:.2%} (target <= 5%)")
    print(json.dumps({
        "run_wall_s": round(wall, 2), "run_under_5s": wall <= 5.0,
        "run_steps_s": {k: round(v, 3) for k, v in steps.items()},
        "sweep_jobs": args.jobs, "sweep_1_job_s": round(one, 2),
        f"sweep_{args.jobs}_jobs_s": round(many, 2), "training_per_job_s": round(training, 3),
        "overhead_per_job_s": round(overhead, 3), "overhead_under_0_5s": overhead <= 0.5,
        "mnist_fit_s": round(fit_s, 2), "logging_s": round(logging_s, 3),
        "logging_share": round(logging_s / fit_s, 4),
        "logging_under_5pct": logging_s / fit_s <= 0.05,
    }))


if __name__ == "__main__":
    main()
