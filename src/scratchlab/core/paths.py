"""Where the project lives, independent of the current working directory, and its commit.

Hydra jobs run from output dirs and DVC queued experiments from temp copies of the repo; both
must read ``conf/`` and write to the same MLflow store as a run started at the repo root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[3]


def project_root() -> Path:
    """``SCRATCHLAB_ROOT``, else the checkout this package is installed from (editable install)."""
    env = os.environ.get("SCRATCHLAB_ROOT")
    if env:
        return Path(env).resolve()
    if (_SOURCE_ROOT / "conf" / "config.yaml").is_file():
        return _SOURCE_ROOT
    return Path.cwd().resolve()


# What decides a run's results beyond its logged config: uncommitted edits here make it "+dirty".
CODE_PATHS = ("src", "pyproject.toml")


def git_commit() -> str:
    """The checkout's commit (``+dirty`` if the code has uncommitted changes), or ``unknown``."""
    root = project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=root,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha
