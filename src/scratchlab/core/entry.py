"""What every entry point does around its work: logging, and one mapping of errors to exits.

Expected failures (``ScratchlabError``) print one line and exit with their documented code;
Ctrl-C and SIGTERM exit 130. The ``scratchlab`` command, the DVC stages and the Hydra app all
go through :func:`exit_code` and :func:`report`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from scratchlab.core.errors import DivergedError, ScratchlabError
from scratchlab.core.progress import quiet_library_bars
from scratchlab.core.signals import (
    ignore_interrupts,
    interrupt_mark,
    interrupted_since,
    sigterm_as_interrupt,
    stopping,
)

log = logging.getLogger("scratchlab")

INTERRUPTED_EXIT = 130
EXPECTED = (ScratchlabError, KeyboardInterrupt)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("alembic", "mlflow.store.db.utils", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def exit_code(exc: BaseException) -> int:
    """The documented exit code of an expected failure (docs/reference/cli.md, Exit codes)."""
    return exc.exit_code if isinstance(exc, ScratchlabError) else INTERRUPTED_EXIT


def report(exc: BaseException) -> None:
    """One log line: a divergence is a warning (in a sweep it is data), the rest errors. After
    an interrupt, the runs are ended and the process is on its way out: later interrupts are
    ignored."""
    if isinstance(exc, KeyboardInterrupt):
        log.error("interrupted; any MLflow run in progress ended KILLED")
        ignore_interrupts()  # what is left is the exit: one more Ctrl-C cannot garble it
    else:
        (log.warning if isinstance(exc, DivergedError) else log.error)("%s", exc)


def restore_hint() -> str | None:
    """How to get the committed ``params.yaml`` back, when this process is a stage of a failed
    ``dvc exp run`` in the workspace (DVC leaves the experiment's overrides in it); a queued
    experiment runs in a temp copy (``DVC_ROOT`` is then another folder) and leaves it alone."""
    name, root = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_ROOT")
    if not name or not root or Path(root).resolve() != Path.cwd().resolve():
        return None
    return (f"experiment {name} failed and params.yaml still holds its overrides: "
            "`git checkout params.yaml` restores the committed one, `scratchlab params` "
            "rewrites it from conf/")


def run_main(main: Callable[[], object]) -> None:
    """Run ``main``; an expected error becomes one logged line and its exit code."""
    setup_logging()
    quiet_library_bars()
    mark = interrupt_mark()
    with sigterm_as_interrupt():
        try:
            main()
        except BaseException as exc:
            error = interrupted_since(mark, exc)  # an interrupt a library reported as its own
            expected = isinstance(error, EXPECTED)
            if isinstance(error, KeyboardInterrupt):  # exiting: a late Ctrl-C/SIGTERM must
                stopping()  # neither cut short the exit nor (report: ignored) kill it halfway
            if expected:
                report(error)
            if hint := restore_hint():
                log.error("%s", hint)
            if not expected:
                raise
            sys.exit(exit_code(error))
