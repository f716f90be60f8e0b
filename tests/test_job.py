"""The orchestration in-process: a job into a real SQLite store, the NumPy test report against
scikit-learn's, a sweep's comparison on its parent, and the notebook API."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.metrics import (
    classification_report,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from scratchlab.api import config
from scratchlab.core.errors import DivergedError
from scratchlab.pipeline.evaluation import classification_scores, regression_scores
from scratchlab.pipeline.job import run_config
from scratchlab.sweeps.compare import table_text
from scratchlab.sweeps.parent import child_tags, start_parent
from scratchlab.sweeps.report import parent_status, report_parent

FAST = ("train.epochs=3", "train.progress=false")


def _client(uri: str) -> tuple[mlflow.MlflowClient, str]:
    client = mlflow.MlflowClient(tracking_uri=uri)
    return client, client.get_experiment_by_name("scratchlab").experiment_id


def test_a_job_records_one_finished_run(tracking_uri: str, tmp_path: Path) -> None:
    val_loss = run_config(config(*FAST), tmp_path / "job", run_name="one")
    client, experiment = _client(tracking_uri)
    (run,) = client.search_runs([experiment])
    assert run.info.status == "FINISHED" and run.info.run_name == "one"
    assert run.data.params["optimizer.lr"] == "0.3" and run.data.params["train.epochs"] == "3"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3] and history[-1].value == val_loss
    assert run.data.tags["diverged"] == "false" and run.data.tags["epochs_run"] == "3"
    names = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/classification_report.txt" in names
    assert (tmp_path / "job" / "model.npz").is_file()
    assert run.data.metrics["test_accuracy"] > 0.8


def test_a_diverged_job_is_recorded_and_raised(tracking_uri: str, tmp_path: Path) -> None:
    with pytest.raises(DivergedError, match=r"optimizer.lr=10: loss diverged at epoch \d"):
        run_config(config("optimizer.lr=10", *FAST), tmp_path / "job")
    client, experiment = _client(tracking_uri)
    (run,) = client.search_runs([experiment])
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
    assert not (tmp_path / "job" / "model.npz").exists()


def test_a_sweep_parent_compares_its_children(tracking_uri: str, tmp_path: Path) -> None:
    base = config(*FAST)
    info = start_parent(base.plain["tracking"], ["optimizer.lr"], "sweep optimizer.lr", {})
    for job, lr in enumerate(("0.1", "0.3", "10")):
        try:
            run_config(config(f"optimizer.lr={lr}", *FAST), tmp_path / str(job),
                       run_name=f"optimizer.lr={lr}", tags=child_tags(info, job),
                       parent_run_id=info.parent_run_id)
        except DivergedError:
            pass
    comparison = report_parent(info.parent_run_id, tmp_path / "comparison")
    assert [r.name for r in comparison.runs] == ["optimizer.lr=0.1", "optimizer.lr=0.3",
                                                 "optimizer.lr=10"]
    assert [r.diverged for r in comparison.runs] == [False, False, True]
    finished = [r for r in comparison.runs if not r.diverged]
    assert comparison.best is min(finished, key=lambda r: r.metrics["val_loss"])
    assert parent_status(comparison) == "FINISHED"
    parent = mlflow.MlflowClient(tracking_uri).get_run(info.parent_run_id)
    assert parent.data.tags["best_run_id"] == comparison.best.run_id
    assert parent.data.metrics["n_diverged"] == 1
    assert {p.name for p in (tmp_path / "comparison").iterdir()} == {
        "comparison.png", "runs.csv", "runs.json"}
    table = table_text(comparison).splitlines()
    assert [line.startswith("*") for line in table[1:]].count(True) == 1


@pytest.mark.parametrize("seed", range(3))
def test_classification_report_is_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 4
    y_true = rng.integers(0, k, 200)
    probabilities = rng.random((200, k))
    probabilities[:, 3] = 0  # a class never predicted: zero_division applies
    names = ["zero", "one", "a long class name", "three"]
    metrics, files = classification_scores(y_true, probabilities, names)
    y_pred = probabilities.argmax(axis=1)
    expected = classification_report(y_true, y_pred, labels=range(k), target_names=names,
                                     digits=4, zero_division=0)
    assert files["classification_report.txt"] == expected
    as_dict = classification_report(y_true, y_pred, labels=range(k), target_names=names,
                                    output_dict=True, zero_division=0)
    ours = files["classification_report.json"]
    assert ours.keys() == as_dict.keys() and ours["accuracy"] == pytest.approx(as_dict["accuracy"])
    for key in set(as_dict) - {"accuracy"}:
        assert ours[key] == pytest.approx(as_dict[key]), key
    assert files["confusion_matrix.json"]["matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert metrics["test_accuracy"] == as_dict["accuracy"]


def test_regression_scores_are_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    actual, predicted = rng.normal(size=50), rng.normal(size=(50, 1))
    metrics, _ = regression_scores(actual, predicted)
    assert metrics["test_mse"] == pytest.approx(mean_squared_error(actual, predicted[:, 0]))
    assert metrics["test_mae"] == pytest.approx(mean_absolute_error(actual, predicted[:, 0]))
    assert metrics["test_r2"] == pytest.approx(r2_score(actual, predicted[:, 0]))


def test_the_readme_notebook_snippet_runs(tracking_uri: str) -> None:
    """The README's Python API example, verbatim (at most 10 lines), logs one full run."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = readme.split("```python\n# notebook\n", 1)[1].split("```", 1)[0]
    assert len(snippet.strip().splitlines()) <= 10
    namespace: dict = {}
    exec(snippet.replace("train.epochs=30", "train.epochs=3"), namespace)  # noqa: S102
    client, experiment = _client(tracking_uri)
    (run,) = client.search_runs([experiment])
    assert run.info.run_id == namespace["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["entry_point"] == "api"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert "evaluation" in {a.path for a in client.list_artifacts(run.info.run_id)}
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    X = namespace["splits"].test.X[:4].astype(np.float64)  # the signature: float64 rows
    assert np.array_equal(model.predict(X), namespace["trained"].net.predict(X))
