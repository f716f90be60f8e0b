"""What every entry point does around its work: logging, and clean exits on expected errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from scratchlab.errors import ScratchlabError
from scratchlab.signals import sigterm_as_interrupt

log = logging.getLogger("scratchlab")

INTERRUPTED_EXIT = 130


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("alembic", "mlflow.store.db.utils", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_main(main: Callable[[], object]) -> None:
    """Run ``main``; an expected error becomes one logged line and its exit code."""
    setup_logging()
    try:
        with sigterm_as_interrupt():
            main()
    except ScratchlabError as exc:
        log.error("%s", exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(INTERRUPTED_EXIT)
