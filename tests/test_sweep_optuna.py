"""``scratchlab tune``: a resumable Optuna study, one MLflow parent, a child per trial."""

from __future__ import annotations

import sys

import optuna
import pytest
from mlflow import MlflowClient

from test_sweep_support import FAST, parent_and_children, run

pytestmark = pytest.mark.slow


def test_second_invocation_resumes_the_study(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    tune = [sys.executable, "-m", "scratchlab.cli", "tune", "--study", "s1",
            "--out", str(tmp_path / "out"), "--trials"]
    first = run([*tune, "2", *FAST], tmp_path, uri)
    assert "study s1: 2 trials" in first
    parent_after_first, _ = parent_and_children(uri)
    second = run([*tune, "3", *FAST], tmp_path, uri)  # --trials: the study's total
    assert "study s1: 3 trials" in second

    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    study = optuna.load_study(study_name="s1", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    parent, kids = parent_and_children(uri)
    assert parent.info.run_id == parent_after_first.info.run_id
    assert parent.info.status == "FINISHED"
    assert [k.data.tags["job_num"] for k in kids] == ["0", "1", "2"]
    for trial, kid in zip(study.trials, kids, strict=True):
        assert kid.info.run_name.startswith(f"trial {trial.number}: optimizer.lr=")
        assert kid.data.metrics["val_loss"] == pytest.approx(trial.value)
        assert kid.data.params["train.batch_size"] == str(trial.params["train.batch_size"])
        assert kid.data.params["model.hidden"] == f"[{trial.params['model.hidden']}]"
    best = min(study.trials, key=lambda t: t.value)
    assert parent.data.tags["best_run_name"].startswith(f"trial {best.number}:")
    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert "comparison/runs.csv" in names
