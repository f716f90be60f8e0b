"""The reference experiments: one-word configs with the issue's architectures, which really run.

Composition is checked in-process; the runs go through the Hydra app
(``python -m scratchlab.train experiment=...``) and once through ``dvc exp run``, with few
epochs where accuracy is not the point and nothing that can leave the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest

from helpers import REPO, SHARED_FASHION, SHARED_MNIST, copy_repo, project_env
from scratchlab.config import compose, validate
from scratchlab.data.ex3d1 import write_ex3d1

# one xdist worker runs this whole module, so its module-scoped fixture is built once
pytestmark = pytest.mark.xdist_group("test_experiments")

CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


def _mnist_two_layer(cfg) -> None:
    assert cfg.data.name == "mnist"
    assert list(cfg.model.hidden) == [100] and cfg.model.activation == "sigmoid"
    assert cfg.model.output == "softmax" and cfg.model.loss == "cross_entropy"
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.1
    assert cfg.train.batch_size == 100


def _ex3d1_ng(cfg) -> None:
    assert cfg.data.name == "ex3d1"
    assert list(cfg.model.hidden) == [25] and cfg.model.activation == "sigmoid"
    assert cfg.model.init == "epsilon" and cfg.optimizer.name == "sgd"


def _keras_mlp(cfg) -> None:
    assert list(cfg.model.hidden) == [64, 64] and cfg.model.activation == "relu"
    assert cfg.model.dropout == 0.5 and cfg.model.output == "softmax"
    assert cfg.optimizer.name == "adam" and cfg.model.loss == "cross_entropy"


def _linear_regression(cfg) -> None:
    assert cfg.model.name == "linear" and list(cfg.model.hidden) == []
    assert cfg.model.output == "linear" and cfg.model.loss == "mse"
    assert cfg.optimizer.name == "adam"
    assert cfg.data.name == "csv" and cfg.data.task == "regression"


def _mnist_best(cfg) -> None:
    assert cfg.data.name == "mnist" and cfg.model.activation == "relu"
    assert len(cfg.model.hidden) >= 2 and cfg.model.dropout > 0
    assert cfg.optimizer.name == "adam" and cfg.model.loss == "cross_entropy"


def _fashion_mlp(cfg) -> None:
    assert cfg.data.name == "fashion_mnist" and list(cfg.model.hidden) == [100]
    assert cfg.model.activation == "relu" and cfg.optimizer.name == "adam"


def _fashion_best(cfg) -> None:
    assert cfg.data.name == "fashion_mnist" and len(cfg.model.hidden) >= 2
    assert cfg.train.early_stopping.enabled and cfg.train.early_stopping.monitor == "val_accuracy"


def _mnist_cnn(cfg) -> None:  # the book's SimpleConvNet
    assert cfg.data.name == "mnist" and cfg.model.name == "cnn"
    assert [dict(b) for b in cfg.model.blocks] == [
        {"type": "conv", "filters": 30, "kernel": 5, "stride": 1, "padding": 0},
        {"type": "maxpool", "size": 2, "stride": 2}]
    assert list(cfg.model.hidden) == [100] and cfg.model.activation == "relu"
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.001
    assert cfg.train.batch_size == 100


def _fashion_cnn(cfg) -> None:
    assert cfg.data.name == "fashion_mnist" and cfg.model.name == "cnn"
    assert [b.type for b in cfg.model.blocks] == ["conv", "maxpool", "conv", "maxpool"]
    assert [b.filters for b in cfg.model.blocks if b.type == "conv"] == [32, 64]
    assert list(cfg.model.hidden) == [128] and cfg.model.dropout == 0.3
    assert cfg.train.early_stopping.enabled and cfg.train.early_stopping.monitor == "val_accuracy"


ARCHITECTURES: dict[str, Callable] = {
    "fashion_mlp": _fashion_mlp,
    "fashion_best": _fashion_best,
    "mnist_two_layer": _mnist_two_layer,
    "ex3d1_ng": _ex3d1_ng,
    "keras_mlp": _keras_mlp,
    "linear_regression": _linear_regression,
    "mnist_best": _mnist_best,
    "mnist_cnn": _mnist_cnn,
    "fashion_cnn": _fashion_cnn,
}


def test_every_experiment_config_is_covered() -> None:
    assert {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")} == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_experiment_composes_validates_and_has_its_architecture(name: str) -> None:
    cfg = compose([f"experiment={name}"])
    validate(cfg)
    ARCHITECTURES[name](cfg)
    assert cfg.tracking.run_name == name


# -- real runs through the Hydra app ---------------------------------------------------------


def _ex3d1_mirror(directory: Path) -> Path:
    """A learnable stand-in for ex3d1.xlsx: 200 rows, labels 1..10 (10 meaning digit 0), each
    class lighting up its own band of pixels."""
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10 + 1
    X = 0.1 * rng.random((200, 400))
    for digit in range(1, 11):
        X[labels == digit, 40 * (digit - 1) : 40 * digit] += 0.8
    mirror = directory / "mirror"
    mirror.mkdir()
    write_ex3d1(mirror / "ex3d1.xlsx", X, labels)
    return mirror


def _linear_law_csv(directory: Path) -> Path:
    """300 rows of y = 3 x1 - 2 x2 + 1 + N(0, 0.1^2)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(-1, 1, 300), rng.uniform(-1, 1, 300)
    y = 3 * x1 - 2 * x2 + 1 + rng.normal(0, 0.1, 300)
    table = directory / "law.csv"
    np.savetxt(table, np.column_stack([x1, x2, y]), delimiter=",", header="x1,x2,y", comments="")
    return table


def _jobs(directory: Path) -> dict[str, list[str]]:
    """Overrides per experiment: few epochs unless accuracy is the point, no network access."""
    jobs = {
        "keras_mlp": ["train.epochs=5"],
        "ex3d1_ng": [f"data.mirror={_ex3d1_mirror(directory)}",
                     f"data.url={CLOSED_PORT_URL}/ex3d1.xlsx", "train.epochs=20"],
        "linear_regression": [f"data.path={_linear_law_csv(directory)}", "data.target=y"],
    }
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        t10k = ["data=idx", f"data.images={SHARED_MNIST / 't10k-images-idx3-ubyte.gz'}",
                f"data.labels={SHARED_MNIST / 't10k-labels-idx1-ubyte.gz'}",
                "data.test_fraction=0.2", "train.epochs=1"]
        jobs |= {"mnist_two_layer": t10k, "mnist_best": t10k}
    if (SHARED_FASHION / "train-images-idx3-ubyte.gz").is_file():
        jobs["fashion_mlp"] = [f"data.mirror={SHARED_FASHION}", "train.epochs=1",
                               "data.base_urls=[]"]
    for name, overrides in jobs.items():
        if name != "keras_mlp":  # one run logging the pyfunc model is enough
            overrides.append("tracking.log_model=false")
    return jobs


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, mlflow.entities.Run | str]:
    """Every experiment through ``python -m scratchlab.train experiment=NAME``, concurrently
    (one shared store, as in a sweep), in a project root of their own (``conf/`` linked, data
    cached there). Maps each name to its MLflow run, or to the output of a failed process."""
    root = tmp_path_factory.mktemp("root")
    (root / "conf").symlink_to(REPO / "conf")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"

    def run(name: str, overrides: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scratchlab.train", f"experiment={name}", *overrides,
             "train.progress=false", f"hydra.run.dir={root / 'out' / name}"],
            cwd=root, env=project_env(root, uri), capture_output=True, text=True, timeout=300,
        )

    jobs = _jobs(root)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        done = {name: pool.submit(run, name, overrides) for name, overrides in jobs.items()}
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("scratchlab")
    results: dict[str, mlflow.entities.Run | str] = {}
    for name, future in done.items():
        process = future.result()
        if process.returncode != 0 or experiment is None:
            results[name] = f"exit {process.returncode}:\n{process.stdout}\n{process.stderr}"
            continue
        [results[name]] = client.search_runs(
            [experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'"
        )
    return results


def _finished(app_runs: dict, name: str) -> mlflow.entities.Run:
    run = app_runs[name]
    assert not isinstance(run, str), run
    assert run.info.status == "FINISHED"
    return run


@pytest.mark.slow
def test_keras_mlp_on_digits(app_runs) -> None:
    run = _finished(app_runs, "keras_mlp")
    assert run.data.params["model.hidden"] == "[64, 64]"
    assert run.data.params["model.dropout"] == "0.5"
    assert {"test_accuracy", "test_loss", "test_macro_f1"} <= set(run.data.metrics)
    assert run.data.metrics["test_accuracy"] > 0.5  # 5 of its 300 epochs: far above chance


@pytest.mark.slow
def test_ex3d1_ng_on_a_synthetic_workbook(app_runs) -> None:
    """The workbook comes from a local mirror; the URL points at a closed loopback port."""
    run = _finished(app_runs, "ex3d1_ng")
    assert run.data.params["model.init"] == "epsilon"
    assert run.data.tags["dataset"] == "ex3d1"
    assert run.data.metrics["test_accuracy"] >= 0.9


@pytest.mark.slow
def test_fashion_mlp_on_the_full_set(app_runs) -> None:
    """One epoch on the real 60k/10k files (Debian's recompressed copies: accepted by content);
    the class names label the report and the confusion matrix."""
    if not (SHARED_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real Fashion-MNIST files not found in {SHARED_FASHION}")
    run = _finished(app_runs, "fashion_mlp")
    assert run.data.tags["dataset"] == "fashion_mnist"
    assert run.data.metrics["test_accuracy"] > 0.8  # one epoch of the 0.87-0.88 net
    artifacts = Path(urlparse(run.info.artifact_uri).path)  # file:// beside the SQLite store
    matrix = json.loads((artifacts / "evaluation" / "confusion_matrix.json").read_text())
    assert matrix["labels"][:2] == ["T-shirt/top", "Trouser"]
    report = (artifacts / "evaluation" / "classification_report.txt").read_text()
    assert "Ankle boot" in report and "Sneaker" in report


@pytest.mark.slow
def test_linear_regression_recovers_a_linear_law(app_runs) -> None:
    run = _finished(app_runs, "linear_regression")
    assert run.data.params["model.loss"] == "mse"
    assert run.data.metrics["test_r2"] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize(("name", "floor"), [("mnist_two_layer", 0.5), ("mnist_best", 0.85)])
def test_mnist_experiments_on_the_real_t10k_files(
    app_runs, shared_mnist: Path, name: str, floor: float
) -> None:
    """One epoch on the 8000/2000 split of the official t10k files."""
    run = _finished(app_runs, name)
    assert run.data.tags["dataset"] == "idx"
    assert run.data.metrics["test_accuracy"] >= floor


# -- through DVC ----------------------------------------------------------------------------


@pytest.mark.slow
def test_dvc_exp_run_takes_an_experiment_by_name(tmp_path: Path) -> None:
    """``-S experiment=keras_mlp`` is a defaults-group override; DVC's Hydra composition
    accepts it like any other ``-S`` value."""
    root = copy_repo(tmp_path / "project")
    env = project_env(root, f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")

    def dvc(*args: str) -> str:
        done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    dvc("exp", "run", "-S", "experiment=keras_mlp", "-S", "train.epochs=3",
        "-S", "train.progress=false", "-S", "tracking.log_model=false")
    shown = json.loads(dvc("metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("scratchlab").experiment_id])
    (run,) = [r for r in runs if r.info.run_name == "keras_mlp"]
    assert run.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    params = (root / "params.yaml").read_text()
    assert "run_name: keras_mlp" in params and "dropout: 0.5" in params
