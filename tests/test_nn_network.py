"""NetworkSpec validation, Network assembly/prediction/state, save/load persistence."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from scratchlab.config import compose, validate
from scratchlab.core.errors import DataError
from scratchlab.nn.layers import BatchNorm, Dense, Dropout, ReLU, Sigmoid
from scratchlab.nn.losses import MeanSquaredError, SigmoidCrossEntropy, SoftmaxCrossEntropy
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.persistence import load_network, save_network

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_model_files_build(path):
    task = "regression" if yaml.safe_load(path.read_text())["loss"] == "mse" else "classification"
    overrides = [f"model={path.stem}"] + (["data=csv", f"data.task={task}"] if task == "regression"
                                           else [])
    conv = bool(yaml.safe_load(path.read_text())["blocks"])
    dims = (784, (28, 28)) if conv else (8, None)  # a conv net reads images
    spec = validate(compose(overrides)).network_spec(dims[0], 3, image_shape=dims[1])
    net = build_network(spec, np.random.default_rng(0))
    out = net.predict(np.zeros((5, dims[0])))
    assert out.shape == (5, 3) and out.dtype == np.float32
    assert NetworkSpec.from_dict(spec.to_dict()) == spec


def test_layout_of_the_keras_style_mlp():
    spec = NetworkSpec(8, 3, (6, 5), "relu", dropout=0.5, batchnorm=True, init="he")
    net = build_network(spec, np.random.default_rng(0))
    names = [name for name, _ in net.named_layers]
    assert names == ["dense1", "batchnorm1", "relu1", "dropout1",
                     "dense2", "batchnorm2", "relu2", "dropout2", "dense3"]  # fmt: skip
    kinds = [Dense, BatchNorm, ReLU, Dropout] * 2 + [Dense]
    assert all(isinstance(layer, kind) for layer, kind in zip(net.layers, kinds, strict=True))
    assert "dense1.b" not in net.params and "dense3.b" in net.params  # BN's beta is the bias
    assert set(net.grads) == set(net.params)
    assert isinstance(net.loss_layer, SoftmaxCrossEntropy)


def test_loss_choice():
    def loss_of(**kw):
        return build_network(NetworkSpec(3, 2, **kw), np.random.default_rng(0)).loss_layer

    assert isinstance(loss_of(output="sigmoid"), SigmoidCrossEntropy)
    assert isinstance(loss_of(output="linear", loss="mse"), MeanSquaredError)
    assert isinstance(loss_of(output="sigmoid", loss="mse"), MeanSquaredError)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"hidden": (10, 0)}, "hidden"),
        ({"hidden": 10}, "hidden"),
        ({"activation": "gelu"}, "activation"),
        ({"output": "relu"}, "output"),
        ({"loss": "hinge"}, "loss"),
        ({"output": "linear"}, "loss"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"init": "glorot"}, "init"),
        ({"init_scale": 0.0}, "init_scale"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"batchnorm": "yes"}, "batchnorm"),
        ({"dtype": "float16"}, "dtype"),
        ({"input_dim": 0}, "input_dim"),
    ],
)
def test_spec_validation_names_the_argument(kwargs, key):
    """The engine takes plain values: a bad one is a ValueError/TypeError naming the argument
    (the config layer names the config key; see test_config)."""
    args = {"input_dim": 4, "output_dim": 3, **kwargs}
    with pytest.raises((ValueError, TypeError), match=rf"^{key}\b") as err:
        NetworkSpec(**args)
    assert "model." not in str(err.value)


def test_spec_error_lists_allowed_values():
    with pytest.raises(ValueError, match="sigmoid, relu, tanh, linear"):
        NetworkSpec(4, 3, activation="elu")
    with pytest.raises(ValueError, match=r"^hiden: unknown key"):
        NetworkSpec.from_dict({"hiden": [3], "input_dim": 4, "output_dim": 3})


def test_seeded_build_is_reproducible():
    spec = NetworkSpec(6, 3, (5,), init="epsilon")
    a = build_network(spec, np.random.default_rng(7)).state_dict()
    b = build_network(spec, np.random.default_rng(7)).state_dict()
    c = build_network(spec, np.random.default_rng(8)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["dense1.W"], c["dense1.W"])


def test_predict_probabilities_in_batches_and_inference_mode():
    spec = NetworkSpec(6, 4, (8,), "relu", dropout=0.5, batchnorm=True)
    net = build_network(spec, np.random.default_rng(0))
    X = np.random.default_rng(1).standard_normal((37, 6))
    p = net.predict(X, batch_size=10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(p, net.predict(X, batch_size=100))  # no dropout, no batch stats


def test_sigmoid_output_gives_independent_probabilities():
    net = build_network(NetworkSpec(3, 2, (4,), output="sigmoid"), np.random.default_rng(0))
    p = net.predict(np.ones((2, 3)))
    assert isinstance(net.output_layer, Sigmoid) and np.all((p > 0) & (p < 1))


def test_state_dict_round_trip_copies_in_place():
    spec = NetworkSpec(4, 3, (5,), batchnorm=True)
    net = build_network(spec, np.random.default_rng(0))
    other = build_network(spec, np.random.default_rng(1))
    W = other.params["dense1.W"]
    state = net.state_dict()
    state["batchnorm1.running_mean"] += 1.0
    other.load_state_dict(state)
    assert other.params["dense1.W"] is W  # optimizer references stay valid
    assert all(np.array_equal(other.state_dict()[k], state[k]) for k in state)
    with pytest.raises(DataError, match="missing"):
        other.load_state_dict({"dense1.W": W})
    bad = {**state, "dense1.W": np.zeros((2, 2))}
    with pytest.raises(DataError, match="shape"):
        other.load_state_dict(bad)


def test_save_load_round_trip_and_deterministic_bytes(tmp_path):
    spec = NetworkSpec(6, 3, (5, 4), "tanh", batchnorm=True, dropout=0.2)
    net = build_network(spec, np.random.default_rng(0))
    net.loss(np.ones((4, 6), np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])  # BN stats
    X = np.random.default_rng(1).standard_normal((9, 6))

    save_network(net, tmp_path / "a" / "model.npz")
    first = (tmp_path / "a" / "model.npz").read_bytes()
    save_network(net, tmp_path / "a" / "model.npz")
    save_network(net, tmp_path / "b" / "model.npz")
    assert (tmp_path / "a" / "model.npz").read_bytes() == first
    assert (tmp_path / "b" / "model.npz").read_bytes() == first
    assert (tmp_path / "a" / "model.json").read_bytes() == (tmp_path / "b/model.json").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model.json", "model.npz"]
    assert json.loads((tmp_path / "a" / "model.json").read_text())["hidden"] == [5, 4]
    assert set(np.load(tmp_path / "a" / "model.npz").files) == set(net.state_dict())

    loaded = load_network(tmp_path / "a" / "model.npz")
    assert loaded.spec == spec
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_load_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="missing.json: not found"):
        load_network(tmp_path / "missing.npz")
    net = build_network(NetworkSpec(3, 2), np.random.default_rng(0))
    save_network(net, tmp_path / "m.npz")
    (tmp_path / "m.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="weights"):
        load_network(tmp_path / "m.npz")
    save_network(net, tmp_path / "m.npz")
    (tmp_path / "m.json").write_text(json.dumps({**net.spec.to_dict(), "hidden": [7]}))
    with pytest.raises(DataError, match="m.npz"):
        load_network(tmp_path / "m.npz")


def test_params_are_views_of_the_flat_vectors():
    from scratchlab.nn.optimizers import SGD

    spec = NetworkSpec(4, 3, (5,), batchnorm=True)
    a = build_network(spec, np.random.default_rng(0))
    b = build_network(spec, np.random.default_rng(0))
    assert a.flat_params.size == sum(p.size for p in a.params.values())
    X, T = np.ones((3, 4), np.float32), np.eye(3, dtype=np.float32)
    for net in (a, b):
        net.loss(X, T)
        net.backward()
    assert a.flat_grads.size == b.flat_grads.size and np.any(a.flat_grads != 0)
    SGD(0.1).update(a.params, a.grads)
    SGD(0.1).update([b.flat_params], [b.flat_grads])
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert all(np.shares_memory(p, a.flat_params) for p in a.params.values())


def test_save_failure_names_the_path_and_leaves_old_files(tmp_path, monkeypatch):
    import os

    from scratchlab.core.errors import ScratchlabError

    net = build_network(NetworkSpec(3, 2), np.random.default_rng(0))
    save_network(net, tmp_path / "model.npz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    other = build_network(NetworkSpec(3, 2), np.random.default_rng(1))
    with pytest.raises(ScratchlabError, match=r"model\.npz: cannot write \(No space left"):
        save_network(other, tmp_path / "model.npz")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files left


def test_the_engine_builds_every_name_its_spec_allows():
    """``scratchlab.spec.network`` lists the choices; the engine has a class or function for
    each, and nothing more."""
    from scratchlab.nn import initializers, network
    from scratchlab.spec import network as spec

    assert set(network.ACTIVATIONS) == set(spec.ACTIVATIONS)
    assert set(network.OUTPUTS) == set(spec.OUTPUTS)
    assert set(initializers.BY_NAME) == set(spec.INITIALIZERS)
