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
               "--port", str(args.port), "--workers", str(args.workers)]
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    print(" ".join(command), flush=True)
    # this environment's MLflow, whether or not its bin/ is on PATH
    os.execv(sys.executable, [sys.executable, "-m", *command])


def _compare(args: argparse.Namespace) -> None:
    from scratchlab.sweeps.compare import run_compare

    run_compare(args.experiment, args.parent, args.last_sweep, args.out)


def _tune(args: argparse.Namespace) -> None:
    from scratchlab.sweeps.tune import tune

    result = tune(args.study, args.trials, args.overrides, args.space, args.out,
                  storage=args.storage, heartbeat_s=args.heartbeat, retries=args.retries)
    counts, best = result.counts, result.best
    extra = "".join(f", {counts[k]} {k}" for k in ("failed", "retried", "running") if counts[k])
    line = (f"study {result.study.study_name}: {counts['trials']} trials{extra} "
            f"({result.ran} run by this worker)")
    print(line + (f", best #{best.number} val_loss={best.value:.4f} {best.params}"
                  if best is not None else ", none completed"))


def _gradcheck(args: argparse.Namespace) -> None:
    from scratchlab.gradcheck_cli import run

    run(args.overrides, tolerance=args.tolerance, samples=args.samples,
        input_dim=args.input_dim, output_dim=args.output_dim)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scratchlab", description=__doc__)
    sub = parser.add_subparsers(required=True, dest="command")

    params = sub.add_parser("params", help="regenerate params.yaml from conf/ (+ overrides)")
    params.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optimizer=adam")
    params.set_defaults(func=_params)

    ui = sub.add_parser("ui", help="open the MLflow UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--workers", type=int, default=1, help="server processes (1 suffices locally)")
    ui.set_defaults(func=_ui)

    cmp = sub.add_parser("compare", help="print a table of runs and write the comparison figure")
    cmp.add_argument("--experiment", default="scratchlab", help="MLflow experiment name")
    which = cmp.add_mutually_exclusive_group()
    which.add_argument("--parent", metavar="RUN_ID", help="compare this sweep's child runs")
    which.add_argument("--last-sweep", action="store_true", help="compare the latest sweep")
    cmp.add_argument("--out", type=Path, default=Path("reports/compare"),
                     help="where comparison.png, runs.csv and runs.json go")
    cmp.set_defaults(func=_compare)

    tune = sub.add_parser("tune", help="Optuna search, resumable by study name; any number "
                          "of workers can share a study")
    tune.add_argument("--trials", type=int, required=True,
                      help="the study's total number of trials: workers stop when the study "
                      "has that many (earlier runs of the study count)")
    tune.add_argument("--study", required=True, help="study name (same name = resume)")
    tune.add_argument("--storage", metavar="URL",
                      help="Optuna storage shared by the workers: an SQLAlchemy URL "
                      "(postgresql+psycopg2://user@host/db, mysql://..., sqlite:///path) or "
                      "journal:PATH (a journal file on a shared filesystem); default "
                      "mlruns/optuna.db beside the MLflow store")
    tune.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                      help="heartbeat interval of a running trial (SQL storages); a trial "
                      "silent for 3 intervals is failed (its worker died) (default 10; 0: off)")
    tune.add_argument("--retries", type=int, default=1,
                      help="times a dead worker's trial is run again (default 1; 0: it stays "
                      "failed and counts as one of the trials)")
    tune.add_argument("--space", type=Path, help="search space YAML (conf/sweep/optuna.yaml)")
    tune.add_argument("--out", type=Path, help="trial outputs (multirun/optuna/<study>)")
    tune.add_argument("overrides", nargs="*", help="fixed Hydra overrides, e.g. train.epochs=5")
    tune.set_defaults(func=_tune)

    grad = sub.add_parser("gradcheck", help="check backprop against numerical gradients "
                          "on the configured network (float64)")
    grad.add_argument("--samples", type=int, default=8, help="batch size of the check")
    grad.add_argument("--tolerance", type=float, default=1e-6,
                      help="largest relative error accepted (default 1e-6)")
    grad.add_argument("--input-dim", type=int, help="input width, for data=idx or csv")
    grad.add_argument("--output-dim", type=int, help="output width, for data=idx or csv")
    grad.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=keras_mlp")
    grad.set_defaults(func=_gradcheck)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
