"""``scratchlab`` command: small project chores that are not pipeline stages."""

from __future__ import annotations

import argparse
import os
import sys

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
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
