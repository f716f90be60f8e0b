"""Lineage and the model registry: every run's dataset input, ``scratchlab promote`` and the
``champion`` alias (read back through the MLflow client), the option on Hydra sweeps and
``scratchlab tune``, and ``mlflow models predict -m models:/NAME@champion`` for real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from scratchlab import api
from scratchlab.api import config
from scratchlab.core.errors import DivergedError, TrackingError
from scratchlab.nn.persistence import load_network
from scratchlab.pipeline.job import run_config
from scratchlab.tracking.lineage import DIGEST_CHARS, dataset_input
from scratchlab.tracking.registry import ALIAS, NotPromotable, promote
from scratchlab.tracking.spool import Spool
from test_sweep_support import FAST, parent_and_children, run

SHORT = ("train.epochs=2", "train.progress=false")


def _only_run(uri: str, tmp_path: Path, *overrides: str) -> mlflow.entities.Run:
    out = tmp_path / f"job{len(list(tmp_path.glob('job*')))}"
    run_config(config(*SHORT, *overrides), out)
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    return mlflow.MlflowClient(uri).get_run(run_id)


def test_every_run_logs_its_dataset_as_an_input(tracking_uri: str, tmp_path: Path) -> None:
    first = _only_run(tracking_uri, tmp_path, "tracking.log_model=false")
    (used,) = first.inputs.dataset_inputs
    dataset = used.dataset
    assert dataset.name == "digits"
    assert dataset.digest == first.data.tags["dataset_sha256"][:DIGEST_CHARS]
    assert dataset.source_type == "code"
    assert json.loads(dataset.source) == {"tags": {"loader": "sklearn.datasets.load_digits"}}
    schema = json.loads(dataset.schema)["mlflow_tensorspec"]
    features, targets = (json.loads(schema[k])[0]["tensor-spec"] for k in ("features", "targets"))
    assert features == {"dtype": "float32", "shape": [-1, 64]}
    assert targets == {"dtype": "float32", "shape": [-1, 10]}
    assert json.loads(dataset.profile)["features_shape"][0] > 1000  # the training split's rows
    assert {(t.key, t.value) for t in used.tags} == {("mlflow.data.context", "training")}
    # another run on the same files uses the same dataset; other files are another dataset
    second = _only_run(tracking_uri, tmp_path, "tracking.log_model=false", "optimizer.lr=0.1")
    assert second.inputs.dataset_inputs[0].dataset.digest == dataset.digest


@pytest.mark.parametrize(("source", "kind", "where"), [
    ({"url": "https://example.org/ex3d1.xlsx", "sha256": "ab"}, "http",
     {"url": "https://example.org/ex3d1.xlsx"}),
    ({"base_urls": ["https://mirror.example/mnist/"], "mirror": "", "files": {}}, "http",
     {"url": "https://mirror.example/mnist/"}),
    ({"images": "/data/t10k-images.gz", "labels": "/data/t10k-labels.gz"}, "local",
     {"uri": "/data/t10k-images.gz"}),
    ({"path": "data/external/table.csv"}, "local", {"uri": "data/external/table.csv"}),
    ({"loader": "sklearn.datasets.load_digits"}, "code",
     {"tags": {"loader": "sklearn.datasets.load_digits"}}),
], ids=["ex3d1", "mnist", "idx", "csv", "digits"])
def test_the_source_is_where_the_fetch_got_the_files(source, kind, where) -> None:
    X, Y = np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32)
    dataset = dataset_input("d", "f" * 64, source, X, Y).dataset
    assert (dataset.source_type, json.loads(dataset.source)) == (kind, where)
    assert dataset.digest == "f" * 32


def test_a_spooled_dataset_input_is_sent_once(tracking_uri: str, tmp_path: Path) -> None:
    """An outage at the run's start spools the input; replaying it twice links it once."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.create_experiment("spool")
    run_id = client.create_run(experiment).info.run_id
    used = dataset_input("digits", "a" * 64, {"loader": "x"}, np.zeros((2, 3), np.float32),
                         np.zeros((2, 1), np.float32))
    spool = Spool(run_id, tracking_uri, root=tmp_path / "spool")
    for _ in range(2):
        spool.add({"kind": "input", **used.to_dictionary()})
    assert spool.replay(client, log_model=lambda files: None) == 2
    (linked,) = client.get_run(run_id).inputs.dataset_inputs
    assert linked.dataset.digest == "a" * 32


def test_promote_registers_the_model_and_moves_the_champion(tracking_uri: str,
                                                            tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri)
    first = _only_run(tracking_uri, tmp_path)
    promotion = promote(first.info.run_id)
    assert (promotion.name, promotion.version, promotion.new_version) == (
        "scratchlab-digits", "1", True)
    champion = client.get_model_version_by_alias("scratchlab-digits", ALIAS)
    assert champion.run_id == first.info.run_id and str(champion.version) == "1"
    assert champion.tags["dataset_sha256"] == first.data.tags["dataset_sha256"]
    assert float(champion.tags["test_accuracy"]) == pytest.approx(
        first.data.metrics["test_accuracy"], rel=1e-5)
    assert client.get_run(first.info.run_id).data.tags["promoted_to"] == "scratchlab-digits v1"
    # the same run again: no new version; another run: version 2 becomes the champion
    assert promote(first.info.run_id).new_version is False
    second = _only_run(tracking_uri, tmp_path, "optimizer.lr=0.1")
    assert api.promote(second.info.run_id).version == "2"  # the notebook API, the same
    assert client.get_model_version_by_alias("scratchlab-digits", ALIAS).run_id == (
        second.info.run_id)
    assert promote(first.info.run_id, "scratchlab-digits").version == "1"  # back to the first
    rows = np.random.default_rng(0).integers(0, 17, (4, 64)) / 16.0
    served = mlflow.pyfunc.load_model(f"models:/scratchlab-digits@{ALIAS}").predict(rows)
    weights = tmp_path / "job0" / "model.npz"
    np.testing.assert_array_equal(served, load_network(weights).predict(rows))


def test_runs_that_cannot_be_champions(tracking_uri: str, tmp_path: Path) -> None:
    no_model = _only_run(tracking_uri, tmp_path, "tracking.log_model=false")
    with pytest.raises(NotPromotable, match=r"no logged model 'model'"):
        promote(no_model.info.run_id)
    with pytest.raises(DivergedError, match="diverged"):
        run_config(config(*SHORT, "optimizer.lr=10", "train.epochs=4"), tmp_path / "bad")
    diverged = json.loads((tmp_path / "bad" / "run.json").read_text())["run_id"]
    with pytest.raises(NotPromotable, match=r"diverged; only a finished run can be promoted"):
        promote(diverged)
    with pytest.raises(TrackingError, match=r"run 0123abc: not in the store"):
        promote("0123abc")


@pytest.mark.slow
def test_mlflow_models_predict_scores_the_champion(tracking_uri: str, tmp_path: Path) -> None:
    """The documented command, as a process, on the alias: 3 CSV rows, 3 predictions, equal to
    the promoted network's."""
    run_id = _only_run(tracking_uri, tmp_path).info.run_id
    promotion = promote(run_id, "digits-champion")
    rows = np.random.default_rng(1).integers(0, 17, (3, 64)) / 16.0
    pd.DataFrame(rows, columns=[f"pixel_{i}" for i in range(64)]).to_csv(
        tmp_path / "rows.csv", index=False)
    run([sys.executable, "-m", "mlflow", "models", "predict", "-m", promotion.uri,
         "-i", "rows.csv", "-t", "csv", "-o", "out.json", "--env-manager", "local"],
        tmp_path, tracking_uri)
    predictions = np.array(json.loads((tmp_path / "out.json").read_text())["predictions"],
                           dtype=np.float32)
    np.testing.assert_array_equal(predictions,
                                  load_network(tmp_path / "job0" / "model.npz").predict(rows))


@pytest.mark.slow
def test_a_sweep_promotes_its_best_child(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run([sys.executable, "-m", "scratchlab.train", "-m", "optimizer.lr=0.05,0.3",
         "train.epochs=2", "train.progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         "hydra.callbacks.mlflow_sweep.promote=digits-sweep"], tmp_path, uri)
    parent, kids = parent_and_children(uri)
    champion = mlflow.MlflowClient(uri).get_model_version_by_alias("digits-sweep", ALIAS)
    assert champion.run_id == parent.data.tags["best_run_id"]
    assert champion.run_id in {k.info.run_id for k in kids}


@pytest.mark.slow
def test_tune_promotes_the_studys_best_trial(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    out = run([sys.executable, "-m", "scratchlab.cli", "tune", "--study", "p", "--trials", "2",
               "--out", str(tmp_path / "out"), "--promote", "digits-tuned",
               *(o for o in FAST if not o.startswith("tracking.log_model"))], tmp_path, uri)
    assert "digits-tuned version 1; alias champion -> version 1" in out
    parent, kids = parent_and_children(uri)
    champion = mlflow.MlflowClient(uri).get_model_version_by_alias("digits-tuned", ALIAS)
    best = min(kids, key=lambda k: k.data.metrics["val_loss"])
    assert champion.run_id == best.info.run_id == parent.data.tags["best_run_id"]
