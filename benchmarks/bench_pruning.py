"""What pruning saves: the same Optuna study with and without the median pruner.

Both studies: 30 trials on Fashion-MNIST (the default sigmoid net, momentum), ``optimizer.lr``
log-uniform over 1e-4..10 (below ~1e-2 a trial barely learns in its epochs, above ~3 it
diverges), the same ``train.seed`` and so the same first draws, run by 2 ``scratchlab tune``
workers started together on a fresh SQLite study storage and MLflow store each. The pruned
study uses ``--pruner median`` (5 startup trials, warm-up 2 epochs). Per study: the wall time of
the trials (first start to last end, Optuna's timestamps: the workers' interpreter start, the
same for both, is reported apart as the processes' wall time), epochs trained (the
``epochs_run`` of every child run), trials pruned, and the best val_loss.

Fashion-MNIST, not digits: a trial reports to the study storage after every epoch and asks the
pruner (a write and a read, ~5-50 ms on SQLite), which is more than a digits epoch (~10 ms) and
next to nothing beside a Fashion-MNIST one (~1 s). The data is prepared once before both
studies, so neither pays for it.

    .venv/bin/python benchmarks/bench_pruning.py [--trials 30] [--epochs 10] [--workers 2]
        [--figure docs/tuning-pruning.png]

Targets: ``wall_ratio`` (pruned / unpruned) <= 0.5, best val_loss within 2 % of the unpruned
study's. The last line printed is one JSON object; ``python benchmarks/record.py bench_pruning``
keeps it in ``benchmarks/results/bench_pruning.json`` with the date, machine and commit (the
docs render it from there). The workers run with OpenBLAS's own kernel choice (a pinned
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` is unset for them); the kernel is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALL_TARGET = 0.5
GAP_TARGET = 0.02
SPACE = """params:
  optimizer.lr: {type: float, low: 1.0e-4, high: 10.0, log: true}
pruner: none
pruners:
  median: {startup_trials: 5, warmup_epochs: 2}
"""
# The CPU kernel: OpenBLAS's own choice on this machine, not one pinned by the environment.
PINNED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def default_data_dir() -> Path:
    shared = os.environ.get("SCRATCHLAB_SHARED_DATA")
    return (Path(shared) if shared else ROOT.parent / "shared" / "data") / "fashion-mnist"


def environment(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"}


def blas_kernel(env: dict[str, str]) -> str:
    code = ("import numpy; from threadpoolctl import threadpool_info; "
            "print(','.join(str(p.get('architecture')) for p in threadpool_info() "
            "if p.get('user_api') == 'blas'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def data_overrides(args: argparse.Namespace) -> list[str]:
    return ["data=fashion_mnist", f"data.mirror={args.data_dir.resolve()}"]


def prepare(args: argparse.Namespace, env: dict[str, str]) -> None:
    """The dataset's splits in the project's cache, before any study is timed."""
    code = ("import sys; from scratchlab.api import config; "
            "from scratchlab.pipeline.prepare import prepare_data; "
            "prepare_data(config(*sys.argv[1:]))")
    subprocess.run([sys.executable, "-c", code, *data_overrides(args)], env=env, check=True)


def run_study(work: Path, pruner: str, args: argparse.Namespace) -> dict:
    """``args.workers`` workers on one fresh study; what it cost and found."""
    import optuna
    from mlflow import MlflowClient

    store = work / pruner / "mlruns"
    store.mkdir(parents=True)
    env = environment(store)
    command = [sys.executable, "-m", "scratchlab.cli", "tune", "--study", "bench", "--trials",
               str(args.trials), "--space", str(work / "space.yaml"), "--pruner", pruner,
               "--out", str(work / pruner / "out"), *data_overrides(args),
               f"train.epochs={args.epochs}",
               f"train.seed={args.seed}", "train.progress=false", "tracking.log_model=false"]
    logs = [open(work / pruner / f"worker{i}.log", "w") for i in range(args.workers)]  # noqa: SIM115
    start = time.perf_counter()
    workers = [subprocess.Popen(command, cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT) for log in logs]
    codes = [w.wait() for w in workers]
    process_wall = time.perf_counter() - start
    for log in logs:
        log.close()
    if any(codes):
        raise SystemExit(f"a worker failed; see {work / pruner}/worker*.log")

    trials = [t for t in optuna.load_study(study_name="bench",
                                           storage=f"sqlite:///{store / 'optuna.db'}").trials
              if not t.user_attrs.get("skipped")]
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds()
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    [parent] = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(kids) == args.trials and not [r for r in runs if r.info.status == "RUNNING"]
    return {
        "pruner": pruner,
        "wall_s": round(span, 2),
        "process_wall_s": round(process_wall, 2),
        "epochs_trained": sum(int(r.data.tags["epochs_run"]) for r in kids),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "diverged": sum(r.data.tags.get("diverged") == "true" for r in kids),
        "best_val_loss": parent.data.metrics["best_val_loss"],
        "best_trial": parent.data.tags["best_run_name"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="the four Fashion-MNIST .gz files (default: ../shared/data)")
    parser.add_argument("--figure", type=Path,
                        help="copy the pruned study's comparison figure here (docs/tuning-"
                        "pruning.png)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as name:
        work = Path(name)
        (work / "space.yaml").write_text(SPACE)
        kernel = blas_kernel(environment(work))
        prepare(args, environment(work))
        plain = run_study(work, "none", args)
        pruned = run_study(work, "median", args)
        if args.figure is not None:
            shutil.copyfile(work / "median" / "out" / "comparison" / "comparison.png",
                            args.figure)
    wall_ratio = pruned["wall_s"] / plain["wall_s"]
    gap = (pruned["best_val_loss"] - plain["best_val_loss"]) / plain["best_val_loss"]
    print(f"{args.trials} trials of Fashion-MNIST, optimizer.lr log-uniform 1e-4..10, "
          f"train.epochs={args.epochs}, {args.workers} workers, SQLite storage, "
          f"{os.cpu_count()} cores, BLAS kernel {kernel}")
    print(f"{'pruner':>7} {'trials wall s':>13} {'process wall s':>14} {'epochs':>6} "
          f"{'pruned':>6} {'diverged':>8} {'best val_loss':>13}")
    for r in (plain, pruned):
        print(f"{r['pruner']:>7} {r['wall_s']:>13.1f} {r['process_wall_s']:>14.1f} "
              f"{r['epochs_trained']:>6} {r['pruned']:>6} {r['diverged']:>8} "
              f"{r['best_val_loss']:>13.4f}")
    print(f"wall ratio {wall_ratio:.2f} (target <= {WALL_TARGET}: "
          f"{'met' if wall_ratio <= WALL_TARGET else 'NOT met'}); best val_loss "
          f"{gap:+.1%} of the unpruned study's (target within {GAP_TARGET:.0%}: "
          f"{'met' if gap <= GAP_TARGET else 'NOT met'})")
    result = {  # flat: the docs quote these as [[bench_pruning.KEY]]
        "trials": args.trials, "epochs": args.epochs, "workers": args.workers,
        "seed": args.seed, "blas_kernel": kernel,
        **{f"{name}_{key}": value for name, study in (("unpruned", plain), ("pruned", pruned))
           for key, value in study.items() if key != "pruner"},
        "wall_ratio": round(wall_ratio, 3), "wall_ratio_target": WALL_TARGET,
        "wall_ratio_met": wall_ratio <= WALL_TARGET,
        "process_wall_ratio": round(pruned["process_wall_s"] / plain["process_wall_s"], 3),
        "epochs_ratio": round(pruned["epochs_trained"] / plain["epochs_trained"], 3),
        "best_val_loss_gap": round(gap, 4), "best_val_loss_gap_target": GAP_TARGET,
        "best_val_loss_met": gap <= GAP_TARGET,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
