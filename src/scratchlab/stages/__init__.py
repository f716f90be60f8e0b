"""DVC stages: each a short script reading ``params.yaml`` with explicit deps/params/outs.

Paths are relative to the working directory DVC runs them in (the repo, or an experiment's
temp copy of it).
"""

from collections.abc import Callable
from pathlib import Path

PARAMS = Path("params.yaml")
RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
MODEL_DIR = Path("models")
REPORTS_DIR = Path("reports")


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main`` like any entry point, stopping it (run KILLED) if DVC dies."""
    from scratchlab.core.entry import run_main
    from scratchlab.core.lifeline import stop_with_parent

    stop_with_parent()
    run_main(main)
