"""The whole pipeline through real `dvc repro` / `dvc exp run` in a copy of the repo."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import mlflow
import pytest

from conftest import copy_repo, project_env

# one xdist worker runs this whole module, so its module-scoped fixture is built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_pipeline_dvc")]


def _dvc(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["dvc", *args], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    root = copy_repo(tmp_path_factory.mktemp("project"))
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = project_env(root, uri)
    _dvc(root, env, "repro")
    return root, env, uri


def test_repro_reaches_the_accuracy_and_fills_mlflow(project) -> None:
    root, env, uri = project
    shown = json.loads(_dvc(root, env, "metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert metrics["test_accuracy"] >= 0.95

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("scratchlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.name"] == "momentum"
    assert run.data.params["model.hidden"] == "[100]"
    assert run.data.tags["dataset"] == "digits" and len(run.data.tags["dataset_sha256"]) == 64
    assert run.data.tags["seed"] == "0" and run.data.tags["git_commit"] != "unknown"
    assert run.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    epochs = int(run.data.params["train.epochs"])
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(1, epochs + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    for name in ("confusion_matrix.png", "confusion_matrix.json", "classification_report.txt",
                 "classification_report.json", "metrics.json"):
        assert f"evaluation/{name}" in artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "config.yaml", "history.png", "weights", "evaluation"
    }
    assert json.loads((root / "models" / "run.json").read_text())["run_id"] == run.info.run_id
    # the artifacts live in the store beside the database, not in the working directory
    assert (root / "mlruns" / "artifacts").is_dir()


def test_second_repro_changes_nothing(project) -> None:
    root, env, _ = project
    before = _sha(root / "dvc.lock")
    out = _dvc(root, env, "repro")
    assert "Running stage" not in out
    assert "up to date" in _dvc(root, env, "status")
    assert _sha(root / "dvc.lock") == before


def test_same_seed_gives_identical_weights_and_metrics(project) -> None:
    root, env, _ = project
    weights = _sha(root / "models" / "model.npz")
    metrics = (root / "reports" / "metrics.json").read_text()
    _dvc(root, env, "repro", "--force", "--single-item", "train")
    _dvc(root, env, "repro", "--force", "--single-item", "evaluate")
    assert _sha(root / "models" / "model.npz") == weights
    assert (root / "reports" / "metrics.json").read_text() == metrics


def test_exp_run_with_a_new_lr_reruns_only_train_and_evaluate(project) -> None:
    root, env, uri = project
    out = _dvc(root, env, "exp", "run", "-S", "optimizer.lr=0.05")
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'fetch'" not in out and "Running stage 'preprocess'" not in out
    client = mlflow.MlflowClient(tracking_uri=uri)
    lrs = {r.data.params["optimizer.lr"] for r in client.search_runs(
        [client.get_experiment_by_name("scratchlab").experiment_id])}
    assert "0.05" in lrs
