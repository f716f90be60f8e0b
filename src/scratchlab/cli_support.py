"""What every entry point does around its work: logging, and clean exits on expected errors."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from scratchlab.errors import ScratchlabError

log = logging.getLogger("scratchlab")

INTERRUPTED_EXIT = 130


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("alembic", "mlflow.store.db.utils", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_sigterm() -> None:
    """Treat SIGTERM (``kill``, a scheduler's timeout) like Ctrl-C, so runs end KILLED."""
    signal.signal(signal.SIGTERM, _terminate)


def run_main(main: Callable[[], object]) -> None:
    """Run ``main``; an expected error becomes one logged line and its exit code."""
    setup_logging()
    stop_on_sigterm()
    try:
        main()
    except ScratchlabError as exc:
        log.error("%s", exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(INTERRUPTED_EXIT)
