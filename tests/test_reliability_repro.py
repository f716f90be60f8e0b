"""Stopping ``dvc repro`` stops its stage (issue 10, case 3): real dvc, real signals.

DVC does not forward SIGTERM to the stage process; before the stage watched its parent,
``kill <dvc pid>`` left ``python -m scratchlab.stages.train`` training as an orphan with its
MLflow run RUNNING. SIGINT is what Ctrl-C sends to the whole foreground process group (DVC
itself ignores SIGINT while a stage runs, leaving it to the stage: dvc/stage/run.py).
DVC runs the stage through ``$SHELL -c``: bash execs it (DVC is its parent), dash forks it
(a shell in between, which outlives DVC): both are run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from helpers import copy_repo, epochs_logged, project_env
from servers import wait_for

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _statuses(db: Path) -> list[str]:
    with sqlite3.connect(db, timeout=10) as con:
        return [s for (s,) in con.execute("SELECT status FROM runs ORDER BY start_time")]




def _stage_of(dvc: int) -> int:
    """The train stage's pid: DVC's child, or the child of the ``sh -c`` DVC started."""
    (child,) = _children(dvc)
    grandchildren = _children(child)
    return grandchildren[0] if grandchildren else child


@pytest.mark.parametrize("shell", ["/bin/bash", "/bin/sh"])
def test_signal_to_dvc_repro_stops_the_stage_and_ends_its_run_killed(
        tmp_path: Path, shell: str) -> None:
    if not Path(shell).exists():
        pytest.skip(f"{shell} is not on this machine")
    root = copy_repo(tmp_path / "project", ["train.epochs=100000", "train.progress=false",
                                            "tracking.log_model=false"])
    db = root / "mlruns" / "mlflow.db"
    env = {**project_env(root, f"sqlite:///{db}"), "SHELL": shell}
    log = tmp_path / "dvc.log"
    for number, sig in enumerate((signal.SIGTERM, signal.SIGINT), start=1):
        with log.open("a") as out:
            dvc = subprocess.Popen(["dvc", "repro"], cwd=root, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        stage = None
        try:
            wait_for(lambda n=number: epochs_logged(db) >= n * 2 and
                     len(_statuses(db)) == n, 240, "the train stage to log epochs")
            stage = _stage_of(dvc.pid)
            if sig == signal.SIGTERM:
                dvc.send_signal(sig)  # to dvc alone, as `kill` or a scheduler sends it
            else:
                os.killpg(dvc.pid, sig)  # Ctrl-C in the terminal
            dvc.wait(timeout=60)
            wait_for(lambda s=stage: not _alive(s), 60,
                     f"stage {stage} to exit after dvc; its log:\n{log.read_text()[-3000:]}")
        finally:
            if dvc.poll() is None:
                os.killpg(dvc.pid, signal.SIGKILL)
            if stage is not None and _alive(stage):
                os.kill(stage, signal.SIGKILL)
        assert _statuses(db)[-1] == "KILLED", (sig, _statuses(db))
    assert not (root / "models" / "model.npz").exists()
