"""Layers, losses and initializers: gradients against central differences (float64)."""

import numpy as np
import pytest

from scratchlab.nn.gradcheck import check_gradients, numerical_gradient, relative_error
from scratchlab.nn.initializers import epsilon, get_initializer, he, normal, xavier
from scratchlab.nn.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    softmax,
)
from scratchlab.nn.losses import (
    CrossEntropy,
    MeanSquaredError,
    SigmoidCrossEntropy,
    SoftmaxCrossEntropy,
)
from scratchlab.nn.network import NetworkSpec, build_network

TOL = 1e-6


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def check_layer(layer, x, rng) -> dict[str, float]:
    """Relative errors of dx and every parameter gradient, for L = sum(forward(x) * R)."""
    R = rng.standard_normal(layer.forward(x, train=True).shape)

    def f() -> float:
        return float(np.sum(layer.forward(x, train=True) * R))

    f()
    dx = layer.backward(R)
    analytic = {"x": dx, **{k: g.copy() for k, g in layer.grads.items()}}
    errors = {"x": relative_error(analytic["x"], numerical_gradient(f, x))}
    for key, param in layer.params.items():
        errors[key] = relative_error(analytic[key], numerical_gradient(f, param))
    return errors


@pytest.mark.parametrize("layer_cls", [Sigmoid, ReLU, Tanh, Linear, Softmax])
def test_activation_gradients(layer_cls, rng):
    x = rng.standard_normal((6, 5))
    if layer_cls is ReLU:  # keep clear of the kink at 0, where the derivative is undefined
        x += np.sign(x) * 0.1
    errors = check_layer(layer_cls(), x, rng)
    assert errors["x"] < TOL


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients(bias, rng):
    dense = Dense.initialized(5, 4, xavier, rng, "float64", bias=bias)
    dense.params["b" if bias else "W"] += 0.1
    errors = check_layer(dense, rng.standard_normal((6, 5)), rng)
    assert set(errors) == ({"x", "W", "b"} if bias else {"x", "W"})
    assert max(errors.values()) < TOL


def test_dense_first_layer_skips_input_gradient(rng):
    dense = Dense.initialized(5, 4, he, rng, "float64")
    dense.input_grad = False
    dense.forward(rng.standard_normal((3, 5)), train=True)
    assert dense.backward(np.ones((3, 4))) is None
    np.testing.assert_allclose(dense.grads["b"], np.full(4, 3.0))


def test_batchnorm_gradients_and_modes(rng):
    bn = BatchNorm(4, dtype="float64")
    bn.params["gamma"][:] = rng.uniform(0.5, 1.5, 4)
    bn.params["beta"][:] = rng.standard_normal(4)
    x = rng.standard_normal((8, 4)) * 3 + 1
    errors = check_layer(bn, x, rng)
    assert max(errors.values()) < TOL

    fresh = BatchNorm(4, dtype="float64")
    out = fresh.forward(x, train=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(fresh.buffers["running_mean"], 0.1 * x.mean(axis=0))
    # Inference uses the running statistics, so a single row gives the same answer alone.
    row = fresh.forward(x[:1], train=False)
    np.testing.assert_allclose(row, fresh.forward(x, train=False)[:1])


@pytest.mark.parametrize(
    "loss_cls", [SoftmaxCrossEntropy, SigmoidCrossEntropy, CrossEntropy, MeanSquaredError]
)
def test_loss_gradients(loss_cls, rng):
    pred = rng.standard_normal((6, 3))
    t = np.eye(3)[rng.integers(0, 3, 6)]
    if loss_cls is CrossEntropy:
        pred = softmax(pred)
    if loss_cls is MeanSquaredError:
        t = rng.standard_normal((6, 3))
    loss = loss_cls()
    loss.forward(pred, t)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(pred, t), pred)
    assert relative_error(analytic, numeric) < TOL


def test_fused_softmax_cross_entropy_matches_the_chain(rng):
    z, t = rng.standard_normal((5, 4)), np.eye(4)[rng.integers(0, 4, 5)]
    fused, chained, soft = SoftmaxCrossEntropy(), CrossEntropy(eps=0.0), Softmax()
    assert fused.forward(z, t) == pytest.approx(chained.forward(soft.forward(z), t), rel=1e-12)
    np.testing.assert_allclose(fused.backward(), (softmax(z) - t) / 5, rtol=1e-12)
    np.testing.assert_allclose(fused.backward(), soft.backward(chained.backward()), atol=1e-12)


def test_mse_is_half_sum_of_squares_over_batch():
    y, t = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[0.0, 0.0], [3.0, 3.0]])
    assert MeanSquaredError().forward(y, t) == pytest.approx(0.5 * (1 + 4 + 0 + 4) / 2)


def test_stable_at_extreme_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 5.0]], dtype=np.float32)
    t = np.eye(3, dtype=np.float32)[[0, 1]]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert np.isfinite(SoftmaxCrossEntropy().forward(z, t))
        assert np.isfinite(SigmoidCrossEntropy().forward(z, t))
        y = Sigmoid().forward(z)
        assert np.all(np.isfinite(Softmax().forward(z)))
    assert y.dtype == np.float32 and y[0, 0] == 1.0 and 0.0 <= y[0, 1] < 1e-37
    assert CrossEntropy().forward(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])) < 17


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"activation": "relu", "init": "he"},
        {"activation": "tanh", "output": "sigmoid"},
        {"output": "softmax", "loss": "mse"},
        {"output": "linear", "loss": "mse", "activation": "linear"},
        {"batchnorm": True},
        {"dropout": 0.4},
        {"weight_decay": 0.3},
    ],
)
def test_whole_network_gradients(kwargs, rng):
    """A 5-4-3 network (and a deeper 5-4-4-3 variant for BatchNorm) end to end, L2 included."""
    hidden = (4, 4) if kwargs.get("batchnorm") else (4,)
    net = build_network(NetworkSpec(5, 3, hidden, dtype="float64", **kwargs), rng)
    X = rng.standard_normal((7, 5))
    T = np.eye(3)[rng.integers(0, 3, 7)] if net.classification else rng.standard_normal((7, 3))
    check = check_gradients(net, X, T)
    assert set(check.errors) == set(net.params)
    assert max(check.errors.values()) < TOL, check.errors


def test_l2_term_in_loss_and_gradient(rng):
    spec = NetworkSpec(5, 3, (4,), dtype="float64", weight_decay=0.5)
    net = build_network(spec, rng)
    plain = build_network(NetworkSpec(5, 3, (4,), dtype="float64"), np.random.default_rng(0))
    plain.load_state_dict(net.state_dict())
    X, T = rng.standard_normal((4, 5)), np.eye(3)[[0, 1, 2, 0]]
    W1, W2 = net.params["dense1.W"], net.params["dense2.W"]
    penalty = 0.25 * (np.sum(W1**2) + np.sum(W2**2))
    assert net.loss(X, T) == pytest.approx(plain.loss(X, T) + penalty, rel=1e-12)
    net.backward()
    plain.backward()
    np.testing.assert_allclose(net.grads["dense1.W"], plain.grads["dense1.W"] + 0.5 * W1)
    np.testing.assert_allclose(net.grads["dense1.b"], plain.grads["dense1.b"])


def test_dropout_inverted_scaling_and_inference_identity():
    x = np.ones((2000, 50), dtype=np.float32)
    drop = Dropout(0.25, np.random.default_rng(0))
    out = drop.forward(x, train=True)
    kept = out != 0
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.02)  # expectation preserved
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), out)  # same mask backward
    assert drop.forward(x, train=False) is x
    assert Dropout(0.0).forward(x, train=True) is x


def test_dropout_masks_follow_the_generator():
    x = np.ones((4, 6))
    a = Dropout(0.5, np.random.default_rng(3)).forward(x, train=True)
    b = Dropout(0.5, np.random.default_rng(3)).forward(x, train=True)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        Dropout(1.0)


@pytest.mark.parametrize("init", [he, xavier, normal, epsilon])
def test_initializers_shape_dtype_and_seed(init):
    a = init(300, 200, np.random.default_rng(0), "float32")
    b = init(300, 200, np.random.default_rng(0), "float32")
    assert a.shape == (300, 200) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_initializer_scales():
    rng = np.random.default_rng(0)
    assert he(400, 100, rng).std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert xavier(400, 100, rng).std() == pytest.approx(np.sqrt(2 / 500), rel=0.02)
    assert get_initializer("normal", 0.05)(400, 100, rng).std() == pytest.approx(0.05, rel=0.02)
    e = np.sqrt(6) / np.sqrt(400 + 100)
    U = epsilon(400, 100, rng)
    assert -e <= U.min() < -0.99 * e and 0.99 * e < U.max() <= e


def test_unknown_initializer_names_the_argument_and_choices():
    with pytest.raises(ValueError, match=r"^init='glorot' is not allowed; .*he, xavier, normal"):
        get_initializer("glorot")


def test_numerical_gradient_restores_x_and_check_gradients_leaves_net_as_it_was(rng):
    x = rng.standard_normal((3, 4))[:, ::2]  # a non-contiguous view
    before = x.copy()
    grad = numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(grad, 3 * before**2, rtol=1e-7, atol=1e-9)

    net = build_network(NetworkSpec(5, 3, (4,), batchnorm=True, dtype="float64"), rng)
    state = net.state_dict()
    check_gradients(net, rng.standard_normal((6, 5)), np.eye(3)[[0, 1, 2, 0, 1, 2]])
    assert all(np.array_equal(v, net.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="float64"):
        check_gradients(build_network(NetworkSpec(5, 3), rng), np.ones((2, 5)), np.eye(3)[:2])
