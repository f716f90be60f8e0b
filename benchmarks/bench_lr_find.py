"""What ``scratchlab lr-find`` costs on digits and what its suggestion is worth.

1. Time: the LR range test of the default config (``pipeline.lrfind.lr_find``: build the
   network, 100 mini-batches at most, the suggestion) against one 20-epoch training of the same
   config (``pipeline.training.train``: build the network, fit with validation each epoch),
   interleaved, medians of ``--repeats``; both in one warm process, the data cached, no MLflow
   and no figure on either side (their fixed costs would swamp digits' milliseconds). Target:
   ``time_ratio`` <= 0.05.
2. Worth: the default config (momentum, lr 0.3, 40 epochs) trained at the suggested lr and
   tested, against the default config as it is. Target: ``suggested_test_accuracy`` >=
   ``default_test_accuracy``.

The measurement runs in a worker process with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``
unset (some machines pin them; tests never change them), which reports the BLAS kernel it got.

    .venv/bin/python benchmarks/bench_lr_find.py [--repeats 7]

The last line printed is one JSON object with the figures (``benchmarks/record.py bench_lr_find``
keeps it, with the date, the machine and the commit, for the docs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PINNED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
TRAIN_EPOCHS = 20


def _blas_kernel() -> str:
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return ", ".join(f"{p.get('internal_api')} {p.get('architecture')}" for p in blas) or "none"


def measure(repeats: int) -> dict:
    """The figures, in this (worker) process."""
    from scratchlab import api
    from scratchlab.pipeline.lrfind import lr_find
    from scratchlab.pipeline.training import train

    base = ["train.progress=false", "tracking.log_model=false"]
    default = api.config(*base)
    twenty = api.config(*base, f"train.epochs={TRAIN_EPOCHS}")
    splits = api.load_data(default)
    lr_find(default, splits)  # warm: imports, BLAS, caches
    train(twenty, splits)
    finds, trainings = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        found = lr_find(default, splits)
        finds.append(time.perf_counter() - start)
        start = time.perf_counter()
        train(twenty, splits)
        trainings.append(time.perf_counter() - start)
    lr = found.suggestion
    scores = {}
    for name, config in (("default", default),
                         ("suggested", api.config(*base, f"optimizer.lr={lr}"))):
        trained = api.train(config, splits)
        scores[name] = api.evaluate(config, trained.net, splits).metrics["test_accuracy"]
    lr_find_s, train_s = statistics.median(finds), statistics.median(trainings)
    return {
        "lr_find_s": round(lr_find_s, 4), "train_20_epochs_s": round(train_s, 4),
        "time_ratio": round(lr_find_s / train_s, 4),
        "time_under_5pct": lr_find_s / train_s <= 0.05,
        "batches": len(found.test.lrs), "batches_per_epoch": -(-len(splits.train) // 32),
        "stop_reason": found.test.stop_reason, "suggested_lr": lr, "rule": found.rule,
        "default_lr": default.optimizer.hyper["lr"],
        "default_test_accuracy": round(scores["default"], 4),
        "suggested_test_accuracy": round(scores["suggested"], 4),
        "suggested_at_least_default": scores["suggested"] >= scores["default"],
        "repeats": repeats, "blas_kernel": _blas_kernel(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.repeats)))
        return
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    done = subprocess.run([sys.executable, __file__, "--worker", "--repeats", str(args.repeats)],
                          env=env, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"BLAS kernel: {figures['blas_kernel']} ({', '.join(PINNED)} unset for the worker)")
    print(f"lr-find on digits: {figures['lr_find_s'] * 1000:.1f} ms for {figures['batches']} "
          f"mini-batches ({figures['stop_reason']}); one {TRAIN_EPOCHS}-epoch training "
          f"{figures['train_20_epochs_s'] * 1000:.1f} ms ({TRAIN_EPOCHS} x "
          f"{figures['batches_per_epoch']} mini-batches); ratio {figures['time_ratio']:.3f} "
          f"(target <= 0.05)")
    print(f"suggested lr {figures['suggested_lr']:.3g} ({figures['rule']}): test accuracy "
          f"{figures['suggested_test_accuracy']:.4f}; default lr {figures['default_lr']}: "
          f"{figures['default_test_accuracy']:.4f} (target: at least the default's)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
