"""fit/measure/History: learning, early stopping, divergence, determinism."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from scratchlab.nn.callbacks import DivergenceGuard, EarlyStopping, EpochEnd, History
from scratchlab.nn.loop import fit, measure
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import make_optimizer


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
    assert isinstance(history, History)
    assert history.history["val_accuracy"][-1] > 0.9
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epochs_run == 15 and not history.diverged and not history.stopped_early
    assert measure(net, Xv, Yv)["accuracy"] == history.history["val_accuracy"][-1]


def small_problem(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Y = np.eye(k, dtype=np.float32)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]
    return X, Y


def test_every_sample_once_per_epoch_including_partial_batch():
    X, Y = small_problem(n=10)
    net = build_network(NetworkSpec(5, 3, (4,)), np.random.default_rng(0))
    seen = []
    loss = net.loss

    def recording_loss(x, t, train=True):
        seen.append(x.copy())
        return loss(x, t, train)

    net.loss = recording_loss
    fit(
        net,
        make_optimizer("sgd", 0.1),
        X,
        Y,
        epochs=2,
        batch_size=4,
        rng=np.random.default_rng(0),
        progress=False,
    )
    assert [len(b) for b in seen] == [4, 4, 2, 4, 4, 2]
    for epoch in (seen[:3], seen[3:]):
        rows = np.concatenate(epoch)
        np.testing.assert_array_equal(np.sort(rows, axis=0), np.sort(X, axis=0))
    assert not np.array_equal(np.concatenate(seen[:3]), X)  # shuffled


def test_on_epoch_end_called_once_per_epoch_with_logs():
    X, Y = small_problem()
    calls = []
    net = build_network(NetworkSpec(5, 3, (4,)), np.random.default_rng(0))
    history = fit(
        net,
        make_optimizer("adam", 0.01),
        X,
        Y,
        epochs=4,
        batch_size=16,
        rng=np.random.default_rng(0),
        validation_data=(X[:20], Y[:20]),
        callbacks=[EpochEnd(lambda epoch, logs: calls.append((epoch, dict(logs))))],
        progress=False,
    )
    assert [epoch for epoch, _ in calls] == [0, 1, 2, 3]
    for epoch, logs in calls:
        assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert all(history.history[k][epoch] == v for k, v in logs.items())
    assert history.best_epoch == int(np.argmin(history.history["val_loss"]))


def test_regression_history_has_no_accuracy():
    X, _ = small_problem()
    T = (X @ np.arange(1, 6, dtype=np.float32))[:, None]
    spec = NetworkSpec.from_dict(
        {"hidden": [], "activation": "linear", "output": "linear", "loss": "mse"},
        input_dim=5,
        output_dim=1,
    )
    net = build_network(spec, np.random.default_rng(0))
    history = fit(
        net,
        make_optimizer("sgd", 0.05),
        X,
        T,
        epochs=30,
        batch_size=8,
        rng=np.random.default_rng(0),
        validation_data=(X, T),
        progress=False,
    )
    assert set(history.history) == {"loss", "val_loss"}
    assert history.history["val_loss"][-1] < 1e-3 * history.history["val_loss"][0]
    np.testing.assert_allclose(net.params["dense1.W"][:, 0], np.arange(1, 6), atol=0.05)
    assert set(measure(net, X, T)) == {"loss"}


def test_progress_off_a_terminal_is_one_log_line_per_epoch(capsys, caplog):
    """Where stderr is not a terminal (CI, nohup, DVC queue logs), fit draws no bar (whose
    carriage returns would pile up into one huge line) but logs each epoch with its metrics;
    ``progress=False`` is silent."""
    X, Y = small_problem()
    net = build_network(NetworkSpec(5, 3, (4,)), np.random.default_rng(0))
    with caplog.at_level("INFO", logger="scratchlab.progress"):
        fit(net, make_optimizer("sgd", 0.1), X, Y, epochs=3, batch_size=16,
            rng=np.random.default_rng(0), progress=True)
    assert "\r" not in capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name == "scratchlab.progress"]
    assert [line.split(",")[0] for line in lines] == [f"train: {k}/3 epoch" for k in (1, 2, 3)]
    assert all("loss=" in line and "accuracy=" in line for line in lines)
    caplog.clear()
    fit(net, make_optimizer("sgd", 0.1), X, Y, epochs=2, batch_size=16,
        rng=np.random.default_rng(0), progress=False)
    assert capsys.readouterr().err == "" and not caplog.records


def test_progress_on_a_terminal_is_a_live_bar(monkeypatch, capsys):
    """On a terminal the bar is tqdm's, metrics in its postfix."""
    from scratchlab.core import progress

    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    X, Y = small_problem()
    net = build_network(NetworkSpec(5, 3, (4,)), np.random.default_rng(0))
    fit(net, make_optimizer("sgd", 0.1), X, Y, epochs=2, batch_size=16,
        rng=np.random.default_rng(0), progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "loss=" in err and "2/2" in err


def test_early_stopping_restores_best_weights():
    X, Y = small_problem(n=80)
    Yv = Y[np.random.default_rng(1).permutation(80)]  # labels unrelated to X: val gets worse
    net = build_network(NetworkSpec(5, 3, (32,), "relu", init="he"), np.random.default_rng(0))
    states = []
    es = EarlyStopping(monitor="val_loss", patience=3)
    history = fit(
        net,
        make_optimizer("adam", 0.02),
        X,
        Y,
        epochs=200,
        batch_size=16,
        rng=np.random.default_rng(0),
        validation_data=(X, Yv),
        callbacks=[es, EpochEnd(lambda epoch, logs: states.append(net.state_dict()))],
        progress=False,
    )
    assert history.stopped_early and history.epochs_run < 200
    best = history.best_epoch
    assert best == es.best_epoch == history.epochs_run - 1 - 3
    assert history.history["val_loss"][best] == min(history.history["val_loss"])
    final = net.state_dict()
    assert all(np.array_equal(final[k], states[best][k]) for k in final)
    assert not np.array_equal(final["dense1.W"], states[-1]["dense1.W"])


def test_early_stopping_restores_at_the_end_too():
    X, Y = small_problem()
    Yv = Y[np.random.default_rng(1).permutation(60)]
    net = build_network(NetworkSpec(5, 3, (16,)), np.random.default_rng(0))
    states = []
    es = EarlyStopping(monitor="val_accuracy", patience=1000)
    history = fit(
        net,
        make_optimizer("sgd", 0.5),
        X,
        Y,
        epochs=15,
        batch_size=8,
        rng=np.random.default_rng(0),
        validation_data=(X, Yv),
        callbacks=[es, EpochEnd(lambda epoch, logs: states.append(net.state_dict()))],
        progress=False,
    )
    assert not history.stopped_early and history.epochs_run == 15
    accuracy = history.history["val_accuracy"]
    assert history.best_epoch == accuracy.index(max(accuracy))  # maximized, first best kept
    final = net.state_dict()
    assert all(np.array_equal(final[k], states[history.best_epoch][k]) for k in final)


def test_early_stopping_argument_errors():
    with pytest.raises(ValueError, match=r"^monitor='val_f1' is not allowed; expected one of"):
        EarlyStopping(monitor="val_f1")
    with pytest.raises(ValueError, match=r"^patience=0 is out of range"):
        EarlyStopping(patience=0)
    X, Y = small_problem()
    net = build_network(NetworkSpec(5, 3, (4,)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="val_\\* needs validation data"):
        fit(
            net,
            make_optimizer("sgd", 0.1),
            X,
            Y,
            epochs=1,
            batch_size=8,
            rng=np.random.default_rng(0),
            callbacks=[EarlyStopping()],
            progress=False,
        )
    with pytest.raises(ValueError, match=r"^batch_size=0 is out of range"):
        fit(
            net,
            make_optimizer("sgd", 0.1),
            X,
            Y,
            epochs=1,
            batch_size=0,
            rng=np.random.default_rng(0),
            progress=False,
        )


@pytest.mark.filterwarnings("error")
def test_divergence_is_reported_not_raised():
    X, _ = small_problem()
    T = (X @ np.arange(1, 6, dtype=np.float32))[:, None]
    spec = NetworkSpec(5, 1, (8,), "relu", output="linear", loss="mse", init="he")
    net = build_network(spec, np.random.default_rng(0))
    logged = []
    history = fit(
        net,
        make_optimizer("sgd", 50.0),
        X,
        T,
        epochs=50,
        batch_size=8,
        rng=np.random.default_rng(0),
        validation_data=(X, T),
        callbacks=[EpochEnd(lambda epoch, logs: logged.append(epoch))],
        progress=False,
    )
    assert history.diverged and not history.stopped_early
    assert history.diverged_epoch == history.epochs_run - 1 == logged[-1]
    assert history.epochs_run < 50
    assert all(len(v) == history.epochs_run for v in history.history.values())
    last = history.history["loss"][-1]
    assert not np.isfinite(last) or last > 1e3 * history.history["loss"][0]


def fitted_state(seed: int, dropout: float):
    X, Y = small_problem()
    spec = NetworkSpec(5, 3, (16, 8), "relu", dropout=dropout, batchnorm=True, init="he")
    net = build_network(spec, np.random.default_rng(seed))
    history = fit(
        net,
        make_optimizer("adam", 0.01),
        X,
        Y,
        epochs=5,
        batch_size=7,
        rng=np.random.default_rng(seed),
        validation_data=(X, Y),
        progress=False,
    )
    return net.state_dict(), history.history


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_seed_bit_identical_different_seed_not(dropout):
    (a, ha), (b, hb), (c, _) = (fitted_state(s, dropout) for s in (1, 1, 2))
    assert set(a) == set(b)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert ha == hb
    assert not np.array_equal(a["dense1.W"], c["dense1.W"])


def test_float64_network_trains_in_float64():
    X, Y = small_problem()
    net = build_network(NetworkSpec(5, 3, (4,), dtype="float64"), np.random.default_rng(0))
    opt = make_optimizer("momentum", 0.1, momentum=0.9)
    fit(net, opt, X, Y, epochs=2, batch_size=16, rng=np.random.default_rng(0), progress=False)
    assert all(p.dtype == np.float64 for p in net.params.values())
    assert all(b.dtype == np.float64 for b in opt._buffers.values())


def test_huge_learning_rate_diverges_without_nan(digits):
    """Stable losses never go NaN here: the guard catches a loss stuck well above the initial."""
    X, Y, _, _ = digits
    net = build_network(NetworkSpec(64, 10, (100,)), np.random.default_rng(0))
    history = fit(net, make_optimizer("sgd", 1000.0), X, Y, epochs=30, batch_size=32,
                  rng=np.random.default_rng(0), callbacks=[DivergenceGuard()],
                  progress=False)  # fmt: skip
    assert history.diverged and history.diverged_epoch == 2 and history.epochs_run == 3
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and min(losses) > 1e3 * history.initial_loss
