"""Helpers for the sweep tests (no tests here): the Hydra app as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

FAST = ("train.epochs=2", "train.progress=false", "tracking.log_model=false")


def env_for(uri: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "MLFLOW_TRACKING_URI": uri,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(args: list[str], cwd: Path, uri: str, timeout: int = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env_for(uri), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def sweep(tmp_path: Path, uri: str, *overrides: str, timeout: int = 300) -> Path:
    """``python -m scratchlab.train -m ...`` writing into ``tmp_path/sweep``; the sweep dir."""
    sweep_dir = tmp_path / "sweep"
    run([sys.executable, "-m", "scratchlab.train", "-m", *FAST, *overrides,
         f"hydra.sweep.dir={sweep_dir}"], tmp_path, uri, timeout)
    return sweep_dir


def parent_and_children(uri: str, experiment: str = "scratchlab") -> tuple[Run, list[Run]]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(kids, key=lambda r: int(r.data.tags.get("job_num", 10**9)))
