"""Helpers for the sweep tests (no tests here): the Hydra app as a real subprocess, and what a
pruned study must look like in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import TrialState

FAST = ("train.epochs=2", "train.progress=false", "tracking.log_model=false")
PRUNING_EPOCHS = 8  # of a trial in the pruning tests


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


def study_file(tmp_path: Path, text: str) -> Path:
    """A search-space file over optimizer.lr (1e-5 to 1: many hopeless) plus ``text``."""
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  optimizer.lr: {type: float, low: 1.0e-5, high: 1.0, log: true}\n"
                    + text)
    return path


def check_pruned_study(trials: list[optuna.trial.FrozenTrial], uri: str, study: str,
                       cwd: Path) -> None:
    """Every pruned trial is a FINISHED child run with its tags and curves up to the epoch it
    was stopped at; the parent and ``scratchlab compare`` count them."""
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("scratchlab").experiment_id
    [parent] = client.search_runs([experiment], f"tags.optuna_study = '{study}' and "
                                                "tags.sweep_role = 'parent'")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_pruned"] == len(pruned)
    for trial in pruned:
        epoch = trial.user_attrs["pruned_epoch"]
        assert 1 <= epoch < PRUNING_EPOCHS and sorted(trial.intermediate_values) == list(
            range(1, epoch + 1))
        child = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert child.info.status == "FINISHED", trial.number
        assert child.data.tags["pruned"] == "true"
        assert child.data.tags["pruned_epoch"] == str(epoch)
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == list(range(1, epoch + 1))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and parent.data.tags["best_trial"] in {str(t.number) for t in complete}
    text = run([sys.executable, "-m", "scratchlab.cli", "compare", "--parent",
                parent.info.run_id, "--out", str(cwd / "compare")], cwd, uri)
    assert f"{len(pruned)} of {len(trials)} runs pruned" in text
