"""The network as an MLflow pyfunc model, against a real SQLite tracking store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from scratchlab.nn.network import NetworkSpec, build_network  # noqa: E402
from scratchlab.nn.pyfunc import log_pyfunc_model  # noqa: E402

# one xdist worker runs this whole module, so its module-scoped fixture is built once
pytestmark = pytest.mark.xdist_group("test_nn_pyfunc")


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One run holding a logged model: (tracking uri, run id, net, X)."""
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("nn", artifact_location=(tmp / "artifacts").as_uri())
        spec = NetworkSpec(4, 3, (5,), "relu", dropout=0.2, batchnorm=True)
        net = build_network(spec, np.random.default_rng(0))
        X = np.random.default_rng(1).standard_normal((6, 4))
        with mlflow.start_run(experiment_id=experiment) as run:
            info = log_pyfunc_model(net, name="model", input_example=X[:2])
        yield uri, run.info.run_id, net, X, info
    finally:
        mlflow.set_tracking_uri(previous)


def test_load_back_and_predict_identically(logged):
    uri, run_id, net, X, info = logged
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    expected = net.predict(X)
    np.testing.assert_array_equal(model.predict(X), expected)
    np.testing.assert_array_equal(model.predict(pd.DataFrame(X)), expected)
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(info.model_uri).predict(X), expected)
    inputs = info.signature.inputs.to_dict()
    assert list(inputs[0]["tensor-spec"]["shape"]) == [-1, 4]


def test_logged_from_code_not_pickled(logged):
    uri, run_id, *_ = logged
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
    files = {p.name for p in local.rglob("*")}
    assert "pyfunc_model.py" in files and not [f for f in files if f.endswith(".pkl")]


@pytest.mark.slow
def test_mlflow_models_predict_cli(logged, tmp_path):
    """``mlflow models predict --env-manager local`` in a subprocess (~10 s)."""
    uri, run_id, net, X, _ = logged
    pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).to_csv(tmp_path / "in.csv", index=False)
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli), "models", "predict", "-m", f"runs:/{run_id}/model",
        "-i", str(tmp_path / "in.csv"), "-t", "csv", "-o", str(tmp_path / "out.json"),
        "--env-manager", "local",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    subprocess.run(command, check=True, capture_output=True, timeout=120, env=env)
    predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
    np.testing.assert_allclose(np.array(predictions), net.predict(X), rtol=1e-6)
