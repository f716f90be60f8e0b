"""What several test files share (imported as ``from helpers import ...``; fixtures live in
conftest.py): the repository and the shared real data, project copies for DVC, the environment
of a subprocess working in one, and a poller for epochs a running job has logged."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCRATCHLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_MNIST = SHARED_DATA / "mnist"
SHARED_FASHION = SHARED_DATA / "fashion-mnist"
SCRATCH_ROOT = "SCRATCHLAB_ROOT"  # the project root the code uses (scratchlab.core.paths)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "scratchlab tests",
    "GIT_AUTHOR_EMAIL": "tests@scratchlab.invalid",
    "GIT_COMMITTER_NAME": "scratchlab tests",
    "GIT_COMMITTER_EMAIL": "tests@scratchlab.invalid",
}


# tools' own caches, not outputs of the code under test
NOT_OUTPUTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"}


def checkout_files(root: Path = REPO) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (git-ignored ones too) as path -> (size, mtime), tools' caches
    and the virtualenv left out: what a test must leave as it found it."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in NOT_OUTPUTS and not d.endswith(".egg-info")]
        for name in names:
            path = Path(folder, name)
            if name == ".git":
                continue
            try:
                stat = path.lstat()
            except FileNotFoundError:  # removed while we walked
                continue
            files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return files


def copy_repo(dest: Path, params: list[str] | None = None) -> Path:
    """A git repo holding the project's committed-or-staged files as they are on disk now,
    with ``params`` (Hydra overrides) written into its committed ``params.yaml``."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file() and not name.startswith(("tests/", "benchmarks/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    if params is not None:
        from scratchlab.config import write_params

        write_params(dest / "params.yaml", params)
    env = {**os.environ, **GIT_ENV}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, check=True, env=env)
    return dest


def epochs_logged(db: Path) -> int:
    """Epochs a running job has logged to the SQLite store ``db``, read with plain sqlite3: an
    MLflow client here could race the job's own creation of the store's tables."""
    if not db.exists():  # connecting would create it, under the job's feet
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT count(*) FROM metrics WHERE key='val_loss'").fetchone()[0]
    except sqlite3.Error:  # no tables yet, or the job holds a lock
        return 0


def project_env(root: Path, tracking_uri: str) -> dict[str, str]:
    """Environment for a subprocess working in a project copy at ``root``; for ``REPO``, the
    checkout's code and ``conf/`` with the session's scratch project root (conftest), so that
    what the process writes under the project root stays out of the checkout."""
    venv_bin = str(Path(sys.executable).parent)
    if root == REPO:
        root = Path(os.environ[SCRATCH_ROOT])
    return {
        **os.environ,
        **GIT_ENV,
        SCRATCH_ROOT: str(root),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
