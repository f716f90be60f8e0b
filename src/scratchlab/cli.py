"""The ``scratchlab`` command: every subcommand is defined here, each a thin call into the
module that does the work; errors map to exit codes in one place (``cli_support``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scratchlab.config import compose, validate, write_params
from scratchlab.core.entry import run_main
from scratchlab.core.errors import ConfigError, ScratchlabError
from scratchlab.tracking.store import check_store
from scratchlab.tracking.uri import artifact_location, tracking_uri


class GradientCheckFailed(ScratchlabError):
    """A parameter's backprop gradient disagrees with the numerical one (exit 1)."""


def _store() -> str:
    """The project's store; the first command to open it in a process ends the runs there whose
    owner process is gone (``tracking.liveness``)."""
    from scratchlab.tracking.liveness import reap_once

    uri = tracking_uri()
    check_store(uri)
    reap_once(uri)
    return uri


def _params(args: argparse.Namespace) -> None:
    """Check the composed config first: a config mistake is exit 2, params.yaml untouched."""
    from scratchlab.data.registry import data_config

    validate(compose(args.overrides), data=data_config)
    path = write_params(overrides=args.overrides)
    print(f"wrote {path}")


def _ui(args: argparse.Namespace) -> None:
    """Start the MLflow UI on the project's store, on loopback unless told otherwise."""
    uri = _store()
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port), "--workers", str(args.workers)]
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    from scratchlab.tracking import ui

    url = ui.experiment_runs_url(uri, args.experiment, args.host, args.port)
    print(" ".join(command), flush=True)
    print(f"training runs of experiment {args.experiment!r}: {url}", flush=True)
    if args.open:
        ui.open_when_up(url)
    # MLflow 3's job runners serve its GenAI features, not training runs: without them the UI
    # starts in ~7 s instead of ~20 s, without a dozen busy processes. The user's choice wins.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # this environment's MLflow, whether or not its bin/ is on PATH
    os.execv(sys.executable, [sys.executable, "-m", *command])


def _compare(args: argparse.Namespace) -> None:
    from scratchlab.sweeps.compare import gather_runs, table_text
    from scratchlab.sweeps.report import write_comparison

    _store()
    comparison = gather_runs(args.experiment, args.parent, args.last_sweep, "val_loss")
    print(table_text(comparison))
    title = f"{args.experiment}: {len(comparison.runs)} runs"
    for path in write_comparison(comparison, args.out, title):
        print(f"wrote {path}")


def _reap(args: argparse.Namespace) -> None:
    """End every RUNNING run of the store whose process is gone (docs/reliability.md)."""
    from scratchlab.tracking.liveness import reap_store

    ended = reap_store(tracking_uri(), args.stale_after)
    for run in ended:
        print(f"ended {run.run_id} ({run.run_name}) FAILED: {run.reason}")
    print(f"{len(ended)} abandoned run{'s' if len(ended) != 1 else ''} ended")


def _sync(args: argparse.Namespace) -> None:
    """Upload what runs spooled during a tracking outage (mlruns/spool/)."""
    from scratchlab.tracking.sync import sync

    results = sync(args.spool)
    for run_id, sent, note in results:
        print(f"run {run_id}: {sent} operation{'s' if sent != 1 else ''} {note}")
    print(f"{len(results)} spooled run{'s' if len(results) != 1 else ''} synced"
          if results else "nothing to sync")


def _reproduce(args: argparse.Namespace) -> None:
    """Print ``identical`` or the differences; differences exit 1."""
    from scratchlab.pipeline.reproduce import reproduce

    result = reproduce(args.run_id)
    where = f"run {result.run_id} (commit {result.commit[:12]})"
    if result.identical:
        print(f"{where}: identical (weights and {len(result.metric_diffs)} test metrics)")
        return
    diffs = ", ".join(f"{k} {v:.3g}" for k, v in result.metric_diffs.items())
    raise ScratchlabError(f"{where}: differs: max |weight difference| {result.weight_diff:.3g}; "
                          f"test metric differences: {diffs}")


def _tune(args: argparse.Namespace) -> None:
    from scratchlab.sweeps.tune import tune

    result = tune(args.study, args.trials, args.overrides, args.space, args.out,
                  storage=args.storage, heartbeat_s=args.heartbeat, retries=args.retries,
                  pruner=args.pruner)
    counts, best = result.counts, result.best
    extra = "".join(f", {counts[k]} {k}" for k in ("pruned", "failed", "retried", "running")
                    if counts[k])
    line = (f"study {result.study.study_name}: {counts['trials']} trials{extra} "
            f"({result.ran} run by this worker)")
    print(line + (f", best #{best.number} val_loss={best.value:.4f} {best.params}"
                  if best is not None else ", none completed"))
    if args.promote is not None:
        from scratchlab.tracking.registry import promote

        if result.best_run_id is None:
            raise ScratchlabError(f"--promote: study {result.study.study_name} has no "
                                  "completed trial with a run to promote")
        _print_promotion(promote(result.best_run_id, args.promote))


def _lr_find(args: argparse.Namespace) -> None:
    """Print the suggested lr and its rule; the figure and the run are in the store."""
    from scratchlab.config import compose, validate
    from scratchlab.data.registry import data_config
    from scratchlab.pipeline.lrfind import FIGURE, describe, run_lr_find

    cfg = validate(compose(args.overrides), data=data_config)
    check_store(tracking_uri(cfg.tracking.uri))
    result, run_id = run_lr_find(cfg, args.out, start_lr=args.start_lr, end_lr=args.end_lr,
                                 iterations=args.iterations)
    print(describe(result))
    print(f"loss-vs-lr figure: {args.out / FIGURE}; MLflow run {run_id}")


def _print_promotion(promotion) -> None:
    what = "registered as" if promotion.new_version else "already registered as"
    print(f"run {promotion.run_id}: {what} {promotion.name} version {promotion.version}; "
          f"alias champion -> version {promotion.version}")
    print(f"score it: mlflow models predict -m {promotion.uri} -i rows.csv -t csv "
          "--env-manager local")


def _promote(args: argparse.Namespace) -> None:
    from scratchlab.tracking.registry import promote

    _store()
    _print_promotion(promote(args.run_id, args.name))


def _gradcheck(args: argparse.Namespace) -> None:
    """Print the table; fail (exit 1) naming the worst parameter."""
    from scratchlab.pipeline.netcheck import gradcheck, table

    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance={args.tolerance}: must be > 0")
    check = gradcheck(args.overrides, samples=args.samples, input_dim=args.input_dim,
                      output_dim=args.output_dim, entries=args.entries or None)
    print(table(check, args.tolerance), flush=True)
    errors = check.result.errors
    worst = max(errors, key=errors.__getitem__)
    if errors[worst] >= args.tolerance:
        raise GradientCheckFailed(f"gradient check failed: {worst} relative error "
                                  f"{errors[worst]:.2e} >= tolerance {args.tolerance:g}")
    spec = check.net.spec
    layers = "-".join(map(str, (spec.input_dim, *spec.hidden, spec.output_dim)))
    layers = f"conv net {layers}" if spec.blocks else layers
    skipped = sum(check.result.skipped.values())
    note = f"; {skipped} entries at a kink left out" if skipped else ""
    print(f"OK: {len(errors)} parameters of {layers}, worst {worst} {errors[worst]:.2e} "
          f"< {args.tolerance:g}{note}")


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
    ui.add_argument("--experiment", default="scratchlab",
                    help="experiment whose runs the printed link shows (default: scratchlab)")
    ui.add_argument("--open", action="store_true",
                    help="open that link in the browser once the server answers")
    ui.set_defaults(func=_ui)

    cmp = sub.add_parser("compare", help="print a table of runs and write the comparison figure")
    cmp.add_argument("--experiment", default="scratchlab", help="MLflow experiment name")
    which = cmp.add_mutually_exclusive_group()
    which.add_argument("--parent", metavar="RUN_ID", help="compare this sweep's child runs")
    which.add_argument("--last-sweep", action="store_true", help="compare the latest sweep")
    cmp.add_argument("--out", type=Path, default=Path("reports/compare"),
                     help="where comparison.png, runs.csv and runs.json go")
    cmp.set_defaults(func=_compare)

    reap = sub.add_parser("reap", help="end the store's RUNNING runs whose process is gone")
    reap.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                      help="a run on another machine is gone after this long without a "
                      "heartbeat (default 600)")
    reap.set_defaults(func=_reap)

    sync = sub.add_parser("sync", help="upload what runs spooled while the tracking server "
                          "was unreachable")
    sync.add_argument("--spool", type=Path, help="spool directory (default: mlruns/spool)")
    sync.set_defaults(func=_sync)

    repro = sub.add_parser("reproduce", help="re-run a logged run from its commit, config and "
                           "data in a temp dir; report identical or the differences")
    repro.add_argument("run_id", help="MLflow run id (models/run.json, the UI, scratchlab compare)")
    repro.set_defaults(func=_reproduce)

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
    tune.add_argument("--pruner", metavar="NAME",
                      help="stop hopeless trials early: none, median, successive_halving or "
                      "hyperband (default: the search space file's 'pruner', none as shipped)")
    tune.add_argument("--space", type=Path, help="search space YAML (conf/sweep/optuna.yaml)")
    tune.add_argument("--out", type=Path, help="trial outputs (multirun/optuna/<study>)")
    tune.add_argument("--promote", metavar="NAME",
                      help="when this worker ends, register the study's best trial's model as "
                      "NAME with alias champion (with several workers: the last one to end "
                      "promotes the study's best)")
    tune.add_argument("overrides", nargs="*", help="fixed Hydra overrides, e.g. train.epochs=5")
    tune.set_defaults(func=_tune)

    find = sub.add_parser("lr-find", help="LR range test of the configured network: one short "
                          "run from a tiny to a huge lr; prints a suggested lr")
    find.add_argument("--start-lr", type=float, default=1e-7, help="first lr (default 1e-7)")
    find.add_argument("--end-lr", type=float, default=10.0, help="last lr (default 10)")
    find.add_argument("--iterations", type=int, default=100,
                      help="mini-batches at most; the test stops once the loss blows up "
                      "(default 100)")
    find.add_argument("--out", type=Path, default=Path("reports/lr-find"),
                      help="where lr_find.png, lr_find.csv and lr_find.json go")
    find.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optimizer=adam")
    find.set_defaults(func=_lr_find)

    prom = sub.add_parser("promote", help="register a run's model in the MLflow model "
                          "registry and point alias champion at it")
    prom.add_argument("run_id", help="MLflow run id of a finished run that logged its model")
    prom.add_argument("--name", help="registered model name (default <experiment>-<dataset>, "
                      "e.g. scratchlab-digits)")
    prom.set_defaults(func=_promote)

    grad = sub.add_parser("gradcheck", help="check backprop against numerical gradients "
                          "on the configured network (float64)")
    grad.add_argument("--samples", type=int, default=8, help="batch size of the check")
    grad.add_argument("--tolerance", type=float, default=1e-6,
                      help="largest relative error accepted (default 1e-6)")
    grad.add_argument("--entries", type=int, default=1000,
                      help="entries checked per parameter, drawn at random (default 1000; "
                      "0: all)")
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
