"""``scratchlab`` command: small project chores that are not pipeline stages."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scratchlab.cli_support import run_main
from scratchlab.config import write_params
from scratchlab.tracking.store import artifact_location, check_store, tracking_uri


def _params(args: argparse.Namespace) -> None:
    path = write_params(overrides=args.overrides)
    print(f"wrote {path}")


def _ui(args: argparse.Namespace) -> None:
    """Start the MLflow UI on the project's store, on loopback unless told otherwise."""
    uri = tracking_uri()
    check_store(uri)
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port)]
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    print(" ".join(command), flush=True)
    os.execvp(command[0], command)


def _compare(args: argparse.Namespace) -> None:
    from scratchlab.sweeps.compare import run_compare

    run_compare(args.experiment, args.parent, args.last_sweep, args.out)


def _tune(args: argparse.Namespace) -> None:
    from scratchlab.sweeps.tune import tune

    study = tune(args.study, args.trials, args.overrides, args.space, args.out)
    best = study.best_trial
    print(f"study {study.study_name}: {len(study.trials)} trials, best #{best.number} "
          f"val_loss={best.value:.4f} {best.params}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scratchlab", description=__doc__)
    sub = parser.add_subparsers(required=True, dest="command")

    params = sub.add_parser("params", help="regenerate params.yaml from conf/ (+ overrides)")
    params.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optimizer=adam")
    params.set_defaults(func=_params)

    ui = sub.add_parser("ui", help="open the MLflow UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_ui)

    cmp = sub.add_parser("compare", help="print a table of runs and write the comparison figure")
    cmp.add_argument("--experiment", default="scratchlab", help="MLflow experiment name")
    which = cmp.add_mutually_exclusive_group()
    which.add_argument("--parent", metavar="RUN_ID", help="compare this sweep's child runs")
    which.add_argument("--last-sweep", action="store_true", help="compare the latest sweep")
    cmp.add_argument("--out", type=Path, default=Path("reports/compare"),
                     help="where comparison.png, runs.csv and runs.json go")
    cmp.set_defaults(func=_compare)

    tune = sub.add_parser("tune", help="Optuna search, resumable by study name")
    tune.add_argument("--trials", type=int, required=True, help="trials to run now")
    tune.add_argument("--study", required=True, help="study name (same name = resume)")
    tune.add_argument("--space", type=Path, help="search space YAML (conf/sweep/optuna.yaml)")
    tune.add_argument("--out", type=Path, help="trial outputs (multirun/optuna/<study>)")
    tune.add_argument("overrides", nargs="*", help="fixed Hydra overrides, e.g. train.epochs=5")
    tune.set_defaults(func=_tune)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
