"""fit/evaluate/History: learning, early stopping, divergence, determinism."""

import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import make_optimizer
from scratchlab.nn.training import History, evaluate, fit


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[d.target]
    order = np.random.default_rng(0).permutation(len(X))
    X, Y = X[order], Y[order]
    return X[:1400], Y[:1400], X[1400:], Y[1400:]


def test_digits_sigmoid_net_learns_fast(digits):
    X, Y, Xv, Yv = digits
    spec = NetworkSpec(64, 10, (100,), "sigmoid", "softmax", "cross_entropy")
    net = build_network(spec, np.random.default_rng(0))
    start = time.perf_counter()
    history = fit(
        net,
        make_optimizer("sgd", 0.5),
        X,
        Y,
        epochs=15,
        batch_size=32,
        rng=np.random.default_rng(0),
        validation_data=(Xv, Yv),
        progress=False,
    )
    assert time.perf_counter() - start < 5.0
    assert isinstance(history, History)
    assert history.history["val_accuracy"][-1] > 0.9
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epochs_run == 15 and not history.diverged and not history.stopped_early
    assert evaluate(net, Xv, Yv)["accuracy"] == history.history["val_accuracy"][-1]
