"""The divergence guard raises no false alarm and still catches blow-ups (issue 10, case 4).

Every dataset shape the project trains on (digits, an ex3d1-shaped workbook, an easy 3-class
table, iris/wine/breast-cancer and diabetes from scikit-learn written as CSV) with each
optimizer at its configured learning rate: none may be flagged. Momentum at lr=10 on digits
and a NaN loss must be. In-process through the trainer (composed configs, data read from the
written files), plus the issue's own command as a real process.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, project_env
from scratchlab.config import compose, validate
from scratchlab.data.ex3d1 import write_ex3d1
from scratchlab.data.registry import data_config
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.pipeline.training import train

OPTIMIZERS = ("momentum", "sgd", "nesterov", "adagrad", "rmsprop", "adam")
EPOCHS = 12  # every false alarm the old rule raised came within the first 8 epochs


def easy_table(path: Path) -> Path:
    """300 rows, 3 well-separated classes in 2 features: the issue's easy CSV."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    X = np.array([[0, 0], [3, 3], [-3, 3]])[y] + rng.normal(0, 1, (300, 2))
    pairs = zip(X.tolist(), y.tolist(), strict=True)
    rows = ["a,b,label", *(f"{a!r},{b!r},{c}" for (a, b), c in pairs)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _sklearn_csv(path: Path, loader) -> Path:
    bunch = loader()
    header = ",".join([*(f"f{i}" for i in range(bunch.data.shape[1])), "target"])
    rows = [",".join(map(repr, [*row, target])) for row, target in
            zip(bunch.data.tolist(), bunch.target.tolist(), strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _ex3d1_workbook(directory: Path) -> Path:
    """digits upscaled to 20x20, stored column-major with labels 1..10 like ex3d1.xlsx."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([zoom(im, 2.5, order=1)[:20, :20] for im in digits.images[:1000]]) / 16
    X = np.stack([im.T.ravel() for im in images])
    y = digits.target[:1000]
    write_ex3d1(directory / "ex3d1.xlsx", X, np.where(y == 0, 10, y))
    return directory


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, list[str]]:
    """Overrides selecting each dataset of the matrix (files written once per module)."""
    from sklearn import datasets as sk

    root = tmp_path_factory.mktemp("matrix")
    mirror = root / "mirror"
    mirror.mkdir()
    csv = {name: _sklearn_csv(root / f"{name}.csv", loader) for name, loader in (
        ("iris", sk.load_iris), ("wine", sk.load_wine), ("breast_cancer", sk.load_breast_cancer),
        ("diabetes", sk.load_diabetes))}
    return {
        "digits": [],
        "ex3d1": ["data=ex3d1", f"data.mirror={_ex3d1_workbook(mirror)}",
                  "data.url=http://127.0.0.1:9/ex3d1.xlsx"],
        "easy": ["data=csv", f"data.path={easy_table(root / 'easy.csv')}", "data.target=label"],
        **{name: ["data=csv", f"data.path={csv[name]}"]
           for name in ("iris", "wine", "breast_cancer")},
        "diabetes": ["data=csv", f"data.path={csv['diabetes']}", "data.task=regression",
                     "model=linear"],
    }


def _config(overrides: list[str]):
    return validate(compose([*overrides, "train.progress=false"]), data=data_config)


def _train(overrides: list[str], raw_dir: Path, splits=None):
    config = _config(overrides)
    splits = splits or prepare_data(config, raw_dir=raw_dir)[0]
    return train(config, splits).history


@pytest.mark.parametrize("dataset", ["digits", "ex3d1", "easy", "iris", "wine", "breast_cancer",
                                     "diabetes"])
def test_no_optimizer_diverges_at_its_configured_lr(dataset, datasets, tmp_path) -> None:
    splits = prepare_data(_config(datasets[dataset]), raw_dir=tmp_path / "raw")[0]
    flagged = {}
    for optimizer in OPTIMIZERS:
        history = _train([*datasets[dataset], f"optimizer={optimizer}",
                          f"train.epochs={EPOCHS}"], tmp_path / "raw", splits)
        if history.diverged:
            flagged[optimizer] = [round(v / history.initial_loss, 2)
                                  for v in history.history["loss"]]
    assert flagged == {}, f"{dataset}: loss / untrained loss per epoch of false alarms"


def test_momentum_lr_10_on_digits_diverges(tmp_path) -> None:
    history = _train(["optimizer.lr=10", "train.epochs=40"], tmp_path / "raw")
    assert history.diverged and history.epochs_run <= 6
    assert all(math.isfinite(v) for v in history.history["loss"])  # saturated, not NaN


def test_a_nan_loss_diverges(datasets, tmp_path) -> None:
    history = _train([*datasets["diabetes"], "optimizer=sgd", "optimizer.lr=10",
                      "train.epochs=40"], tmp_path / "raw")
    assert history.diverged and not math.isfinite(history.history["loss"][-1])


@pytest.mark.slow
def test_the_easy_csv_trains_to_the_end_as_a_process(tmp_path: Path) -> None:
    """The issue's command: exited 5 ("loss diverged at epoch 2") with the old rule."""
    table = easy_table(tmp_path / "easy.csv")
    env = project_env(REPO, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    done = subprocess.run(
        [sys.executable, "-m", "scratchlab.train", "data=csv", f"data.path={table}",
         "data.target=label", "train.progress=false", "tracking.log_model=false",
         f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = (tmp_path / "out" / "metrics.json").read_text()
    assert float(metrics.split('"test_accuracy":')[1].split(",")[0].strip(" }\n")) > 0.9
