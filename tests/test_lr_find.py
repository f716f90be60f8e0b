"""``scratchlab lr-find``: the range test's lrs, smoothing and stop, the weights left as they
were, the valley rule, every optimizer and a regression table, the MLflow run, the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from helpers import REPO, project_env
from scratchlab import api
from scratchlab.core.errors import ConfigError
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import SGD
from scratchlab.nn.range_test import (
    BLEW_UP,
    END_REACHED,
    NOT_FINITE,
    RangeTest,
    lr_range_test,
    suggest,
)
from scratchlab.pipeline.lrfind import FIGURE, lr_find, lr_find_figure
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.spec.optim import OPTIMIZERS

FAST = ("train.progress=false", "tracking.log_model=false")


@pytest.fixture(scope="module")
def digits():
    return prepare_data(api.config(*FAST))[0]


def _problem(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]
    return X, Y


class RecordingSGD(SGD):
    def __init__(self) -> None:
        super().__init__(1.0)
        self.seen: list[float] = []

    def update(self, params, grads) -> None:
        self.seen.append(self.lr)
        super().update(params, grads)


def test_the_lr_grows_exponentially_and_the_loss_is_smoothed_as_documented() -> None:
    X, Y = _problem()
    net = build_network(NetworkSpec(4, 3, (6,)), np.random.default_rng(0))
    optimizer = RecordingSGD()
    test = lr_range_test(net, optimizer, X, Y, batch_size=16, rng=np.random.default_rng(0),
                         start_lr=1e-4, end_lr=1e-1, iterations=31, beta=0.8)
    assert test.stop_reason == END_REACHED and len(test.lrs) == 31
    expected = [1e-4 * 1000 ** (i / 30) for i in range(31)]
    np.testing.assert_allclose(test.lrs, expected, rtol=1e-12)
    assert optimizer.seen == test.lrs  # the lr of each update is the one recorded
    avg, smoothed = 0.0, []
    for i, loss in enumerate(test.losses):
        avg = 0.8 * avg + 0.2 * loss
        smoothed.append(avg / (1 - 0.8 ** (i + 1)))
    np.testing.assert_allclose(test.smoothed, smoothed, rtol=1e-12)
    assert test.smoothed[0] == test.losses[0]  # debiased: no pull towards 0


@pytest.mark.parametrize("end_lr", [1e-2, 1e3, 1e8], ids=["gentle", "blows-up", "overflows"])
def test_the_weights_are_restored_however_the_test_ends(end_lr: float) -> None:
    X, Y = _problem()
    spec = NetworkSpec(4, 3, (6,), "relu", dropout=0.2, batchnorm=True)
    net = build_network(spec, np.random.default_rng(0))
    before = {k: v.copy() for k, v in net.state_dict().items()}
    test = lr_range_test(net, SGD(1.0), X, Y, batch_size=8, rng=np.random.default_rng(0),
                         start_lr=1e-3, end_lr=end_lr, iterations=200)
    after = net.state_dict()
    assert set(after) == set(before)
    for key in before:  # weights and BatchNorm running statistics, bit for bit
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    if end_lr > 1:
        assert test.stop_reason in (BLEW_UP, NOT_FINITE) and len(test.lrs) < 200
        if test.stop_reason == BLEW_UP:
            assert test.smoothed[-1] > 4 * min(test.smoothed)


def test_the_valley_is_half_way_down_the_longest_descent() -> None:
    lrs = list(np.geomspace(1e-6, 1.0, 100))
    # flat 2.0 up to i=40, down linearly to 0.5 at i=80, then up steeply
    smoothed = [2.0 + 1e-3 * (i % 2) for i in range(40)]
    smoothed += [2.0 - 1.5 * (i - 39) / 41 for i in range(40, 81)]
    smoothed += [0.5 + 0.5 * (i - 80) for i in range(81, 100)]
    lr = suggest(RangeTest(lrs, smoothed, smoothed), iterations=100)
    index = lrs.index(lr)
    assert 55 <= index <= 65, index  # the middle of the descent (39..80), not its ends
    flat_then_up = [1.0] * 50 + [1.0 + 0.1 * i for i in range(50)]
    assert suggest(RangeTest(lrs, flat_then_up, flat_then_up)) is None
    assert suggest(RangeTest(lrs[:12], smoothed[:12], smoothed[:12])) is None


def _val_loss(overrides: list[str], splits, epochs: int = 10) -> float:
    history = api.train(api.config(*overrides, f"train.epochs={epochs}", *FAST), splits).history
    assert not history.diverged, overrides
    return history.history["val_loss"][-1]


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_gets_a_suggestion_that_trains(optimizer: str, digits) -> None:
    """10 epochs at the suggested lr: no divergence, and a lower validation loss than at a
    tenth of it (the suggestion is where the loss falls, not on the flat start)."""
    found = lr_find(api.config(f"optimizer={optimizer}", *FAST), digits)
    assert found.suggestion is not None and 1e-7 <= found.suggestion <= 10
    at = _val_loss([f"optimizer={optimizer}", f"optimizer.lr={found.suggestion}"], digits)
    below = _val_loss([f"optimizer={optimizer}", f"optimizer.lr={found.suggestion / 10}"], digits)
    assert at < below, (found.suggestion, at, below)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_regression_table(optimizer: str, tmp_path: Path) -> None:
    """MSE on y = 3 x1 - 2 x2 + 1: the curve falls by half and more (plain SGD explodes at large
    lrs, Adam's steps are bounded by its lr: it only wanders), and the suggestion trains."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(-1, 1, 400), rng.uniform(-1, 1, 400)
    table = tmp_path / "law.csv"
    np.savetxt(table, np.column_stack([x1, x2, 3 * x1 - 2 * x2 + 1]), delimiter=",",
               header="x1,x2,y", comments="")
    overrides = ["experiment=linear_regression", f"data.path={table}", "data.target=y",
                 f"optimizer={optimizer}"]
    config = api.config(*overrides, *FAST)
    splits = prepare_data(config, raw_dir=tmp_path / "raw")[0]
    found = lr_find(config, splits)
    assert found.suggestion is not None
    assert min(found.test.smoothed) < 0.5 * found.test.smoothed[0]
    if optimizer == "sgd":
        assert found.test.stop_reason in (BLEW_UP, NOT_FINITE)
    at = _val_loss([*overrides, f"optimizer.lr={found.suggestion}"], splits)
    below = _val_loss([*overrides, f"optimizer.lr={found.suggestion / 10}"], splits)
    assert at < 0.5 * below, (found.suggestion, at, below)


def test_training_after_lr_find_is_training_without_it(digits) -> None:
    config = api.config("train.epochs=2", *FAST)
    alone = api.train(config, digits).net.flat_params.copy()
    lr_find(config, digits)
    np.testing.assert_array_equal(api.train(config, digits).net.flat_params, alone)


def test_the_run_holds_the_curve_the_figure_and_the_suggestion(tracking_uri: str,
                                                                 tmp_path: Path, digits) -> None:
    config = api.config("optimizer=adam", *FAST)
    found = api.lr_find(config, digits, iterations=60)
    run_id = api.log_lr_find(config, found, tmp_path / "out")
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["entry_point"] == "lr-find"
    assert run.data.metrics["suggested_lr"] == found.suggestion
    assert run.data.params["lr_find.iterations"] == "60"
    for key, values in (("lr_find_lr", found.test.lrs), ("lr_find_loss", found.test.losses),
                        ("lr_find_smoothed_loss", found.test.smoothed)):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(1, len(values) + 1))
        np.testing.assert_allclose([m.value for m in history], values)
    names = {a.path for a in client.list_artifacts(run_id, "lr_find")}
    assert names == {"lr_find/lr_find.png", "lr_find/lr_find.csv", "lr_find/lr_find.json"}
    summary = json.loads((tmp_path / "out" / "lr_find.json").read_text())
    assert summary["suggested_lr"] == found.suggestion and summary["rule"].startswith("valley")
    axes = lr_find_figure(found, "digits").axes[0]
    assert axes.get_xscale() == "log" and axes.get_xlabel().startswith("learning rate")


@pytest.mark.parametrize(("options", "message"), [
    ({"start_lr": 0.0}, r"^lr-find: start_lr=0.0, end_lr=10.0: expected 0 < start_lr < end_lr"),
    ({"start_lr": 1.0, "end_lr": 0.1}, r"expected 0 < start_lr < end_lr"),
    ({"iterations": 5}, r"^lr-find: iterations=5: expected an integer >= 10"),
])
def test_bad_options_are_config_errors(options: dict, message: str, digits) -> None:
    with pytest.raises(ConfigError, match=message):
        lr_find(api.config(*FAST), digits, **options)


def test_the_batch_size_is_checked_against_the_data(digits) -> None:
    with pytest.raises(ConfigError, match=r"train.batch_size=5000 exceeds"):
        lr_find(api.config("train.batch_size=5000", *FAST), digits)


@pytest.mark.slow
def test_the_command_prints_the_suggestion_and_logs_the_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "scratchlab.cli", "lr-find", "--out", str(tmp_path / "out"),
         "optimizer=adam", "train.progress=false"],
        cwd=tmp_path, env=project_env(REPO, uri), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    suggested = next(line for line in lines if line.startswith("suggested lr: "))
    lr = float(suggested.split()[2])
    assert "(rule: valley" in suggested and math.isfinite(lr)
    assert (tmp_path / "out" / FIGURE).is_file()
    run_id = lines[-1].split()[-1]
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert f"{run.data.metrics['suggested_lr']:.3g}" == f"{lr:.3g}"
    bad = subprocess.run(
        [sys.executable, "-m", "scratchlab.cli", "lr-find", "--iterations", "3"],
        cwd=tmp_path, env=project_env(REPO, uri), capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and "iterations=3" in bad.stderr
