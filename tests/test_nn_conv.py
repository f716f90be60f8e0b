"""Convolution and pooling: forward against plain loops, gradients against central differences
(float64), every option (stride, padding, channels, overlapping windows, ties), conv nets end to
end, and the architecture's shape rules."""

import numpy as np
import pytest

from scratchlab.nn.conv import AvgPool2D, Conv2D, MaxPool2D, col2im
from scratchlab.nn.functional import im2col
from scratchlab.nn.gradcheck import check_gradients, numerical_gradient, relative_error
from scratchlab.nn.layers import BatchNorm, Flatten, Reshape
from scratchlab.nn.network import build_network
from scratchlab.spec.network import NetworkSpec

TOL = 1e-6


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def conv_loops(x, W, b, stride, padding):
    """The definition: out[n, f, y, x] = sum over c, i, j of W[f, c, i, j] times the padded
    input at (y stride + i, x stride + j), plus b[f]."""
    n, c, h, w = x.shape
    f, _, k, _ = W.shape
    xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
    xp[:, :, padding : padding + h, padding : padding + w] = x
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    out = np.zeros((n, f, oh, ow))
    for a in range(n):
        for g in range(f):
            for y in range(oh):
                for z in range(ow):
                    patch = xp[a, :, y * stride : y * stride + k, z * stride : z * stride + k]
                    out[a, g, y, z] = np.sum(patch * W[g]) + (0.0 if b is None else b[g])
    return out


def pool_loops(x, size, stride, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.zeros((n, c, oh, ow))
    for y in range(oh):
        for z in range(ow):
            window = x[:, :, y * stride : y * stride + size, z * stride : z * stride + size]
            out[:, :, y, z] = reduce(window.reshape(n, c, -1), axis=2)
    return out


CONV_CASES = [  # (channels, filters, kernel, stride, padding, height, width)
    (1, 3, 3, 1, 0, 6, 6),
    (2, 4, 3, 2, 1, 7, 6),
    (3, 2, 2, 3, 2, 8, 9),
    (2, 3, 5, 1, 2, 5, 5),  # a kernel as large as the input, padded
    (1, 2, 1, 1, 0, 4, 3),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "c{}f{}k{}s{}p{}".format(*c[:5]))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_forward_equals_the_loops(case, bias, rng):
    c, f, k, s, p, h, w = case
    x = rng.standard_normal((3, c, h, w))
    conv = Conv2D(rng.standard_normal((f, c, k, k)),
                  rng.standard_normal(f) if bias else None, s, p)
    out = conv.forward(x)
    expected = conv_loops(x, conv.params["W"], conv.params.get("b"), s, p)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("size", "stride"), [(2, 2), (3, 2), (2, 1), (3, 3), (1, 2)])
def test_pool_forward_equals_the_loops(size, stride, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    np.testing.assert_array_equal(MaxPool2D(size, stride).forward(x),
                                  pool_loops(x, size, stride, np.max))
    np.testing.assert_allclose(AvgPool2D(size, stride).forward(x),
                               pool_loops(x, size, stride, np.mean), rtol=1e-14)


def test_col2im_is_the_adjoint_of_im2col(rng):
    """<im2col(x), c> = <x, col2im(c)> for all x, c: col2im sends each column entry back to
    the pixel it was read from (overlaps summed), which is what the input gradient needs."""
    for c, _, k, s, p, h, w in CONV_CASES:
        x = rng.standard_normal((2, c, h, w))
        cols = im2col(x, k, s, p)
        other = rng.standard_normal(cols.shape)
        assert np.vdot(cols, other) == pytest.approx(
            np.vdot(x, col2im(other, x.shape, k, s, p)), rel=1e-12)


def layer_errors(layer, x, rng) -> dict[str, float]:
    """Relative errors of dx and every parameter gradient for L = sum(forward(x) * R)."""
    R = rng.standard_normal(layer.forward(x, train=True).shape)

    def f() -> float:
        return float(np.sum(layer.forward(x, train=True) * R))

    f()
    errors = {"x": relative_error(layer.backward(R), numerical_gradient(f, x))}
    analytic = {key: grad.copy() for key, grad in layer.grads.items()}
    for key, param in layer.params.items():
        errors[key] = relative_error(analytic[key], numerical_gradient(f, param))
    return errors


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "c{}f{}k{}s{}p{}".format(*c[:5]))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_gradients(case, bias, rng):
    c, f, k, s, p, h, w = case
    conv = Conv2D(rng.standard_normal((f, c, k, k)),
                  rng.standard_normal(f) if bias else None, s, p)
    errors = layer_errors(conv, rng.standard_normal((2, c, h, w)), rng)
    assert set(errors) == ({"x", "W", "b"} if bias else {"x", "W"})
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize(("size", "stride"), [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_pool_gradients(size, stride, rng):
    """Continuous random inputs have no ties; a nudge of 1e-5 changes no window's maximum."""
    x = rng.standard_normal((2, 2, 7, 7))
    assert layer_errors(MaxPool2D(size, stride), x, rng)["x"] < TOL
    assert layer_errors(AvgPool2D(size, stride), x, rng)["x"] < TOL


@pytest.mark.parametrize(("size", "stride"), [(2, 2), (3, 2), (2, 1)])
def test_max_pool_ties_send_the_gradient_to_the_first_maximum(size, stride, rng):
    """Where a window holds its maximum more than once, the gradient goes to the first of
    those pixels in reading order (as in PyTorch). That is the gradient of the ties broken in
    the first pixel's favour: lowering every pixel by 1e-5 times its reading-order index makes
    the earliest of equal pixels the strict maximum of every window it is in, and there the
    central differences (h = 1e-7) agree with the gradient computed at the tie. It is also a
    true directional derivative: raising every pixel by t raises every maximum by t."""
    x = np.round(rng.standard_normal((2, 2, 6, 6)) * 0.7)  # small integers: many ties
    pool = MaxPool2D(size, stride)
    out = pool.forward(x, train=True)
    windows = np.stack([x[:, :, i : i + stride * out.shape[2] : stride,
                          j : j + stride * out.shape[3] : stride]
                        for i in range(size) for j in range(size)])
    assert np.sum(np.sum(windows == out, axis=0) > 1) >= 10, "too few ties to test"
    R = rng.standard_normal(out.shape)
    dx = pool.backward(R)

    broken = x - 1e-5 * np.arange(36).reshape(6, 6)

    def f() -> float:
        return float(np.sum(pool.forward(broken, train=True) * R))

    np.testing.assert_allclose(dx, numerical_gradient(f, broken, h=1e-7), rtol=1e-6, atol=1e-9)
    up = (np.sum(pool.forward(x + 1e-3) * R) - np.sum(pool.forward(x - 1e-3) * R)) / 2e-3
    assert np.sum(dx) == pytest.approx(up, rel=1e-9)


def test_batchnorm_on_images_normalizes_each_channel(rng):
    x = rng.standard_normal((4, 3, 5, 5)) * rng.uniform(1, 4, (1, 3, 1, 1)) + 2
    bn = BatchNorm(3, dtype="float64")
    out = bn.forward(x, train=True)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, atol=1e-3)
    bn.params["gamma"][:] = rng.uniform(0.5, 1.5, 3)
    bn.params["beta"][:] = rng.standard_normal(3)
    assert max(layer_errors(bn, x, rng).values()) < TOL


def test_reshape_and_flatten_round_trip(rng):
    x = rng.standard_normal((3, 2 * 4 * 5))
    image = Reshape((2, 4, 5)).forward(x)
    assert image.shape == (3, 2, 4, 5) and np.shares_memory(image, x)
    assert layer_errors(Reshape((2, 4, 5)), x, rng)["x"] < TOL
    assert layer_errors(Flatten(), image, rng)["x"] < TOL


CONV_NETS = {  # name: (image_shape, blocks, other spec keys)
    "conv-maxpool": ((1, 8, 8), [{"type": "conv", "filters": 3, "kernel": 3},
                                 {"type": "maxpool", "size": 2}], {}),
    "stride-padding-avgpool": ((2, 7, 7), [{"type": "conv", "filters": 3, "kernel": 3,
                                            "stride": 2, "padding": 1},
                                           {"type": "avgpool", "size": 2, "stride": 1}], {}),
    "two-convs-batchnorm": ((1, 8, 8), [{"type": "conv", "filters": 2, "kernel": 3},
                                        {"type": "conv", "filters": 3, "kernel": 2,
                                         "padding": 1},
                                        {"type": "maxpool", "size": 3, "stride": 2}],
                            # no hidden layer: a BatchNorm there would cancel the shifts of
                            # batchnorm_conv2.beta, whose gradient would be 0 (noise vs noise)
                            {"batchnorm": True, "hidden": ()}),
    "tanh-dropout-l2": ((1, 6, 6), [{"type": "conv", "filters": 2, "kernel": 3},
                                    {"type": "maxpool", "size": 2}],
                        {"activation": "tanh", "dropout": 0.3, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("name", CONV_NETS)
def test_whole_conv_network_gradients(name, rng):
    image, blocks, extra = CONV_NETS[name]
    spec = NetworkSpec(int(np.prod(image)), 3, **{"hidden": (4,), "activation": "relu", **extra},
                       dtype="float64", init="he", blocks=blocks, image_shape=image)
    net = build_network(spec, rng)
    X = rng.standard_normal((5, spec.input_dim))
    check = check_gradients(net, X, np.eye(3)[rng.integers(0, 3, 5)])
    assert set(check.errors) == set(net.params)
    assert any(key.startswith("conv1.") for key in check.errors)
    assert max(check.errors.values()) < TOL, check.errors


def test_layout_of_a_conv_net():
    spec = NetworkSpec(784, 10, (100,), "relu", init="he", image_shape=(28, 28), blocks=[
        {"type": "conv", "filters": 30, "kernel": 5}, {"type": "maxpool", "size": 2}])
    net = build_network(spec, np.random.default_rng(0))
    assert [name for name, _ in net.named_layers] == [
        "reshape", "conv1", "relu_conv1", "maxpool2", "flatten", "dense1", "relu1", "dense2"]
    assert net.params["conv1.W"].shape == (30, 1, 5, 5)
    assert net.params["dense1.W"].shape == (30 * 12 * 12, 100) and spec.flat_dim == 4320
    out = net.predict(np.random.default_rng(1).random((3, 784), dtype=np.float32))
    assert out.shape == (3, 10) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("blocks", "image", "message"),
    [
        ([{"type": "conv", "filters": 2, "kernel": 9}], (8, 8),
         r"^blocks\[0\]\.kernel=9: larger than its 8x8 input$"),
        ([{"type": "conv", "filters": 2, "kernel": 3}, {"type": "maxpool", "size": 7}], (8, 8),
         r"^blocks\[1\]\.size=7: larger than its 6x6 input \(after blocks\[0\]\)$"),
        ([{"type": "conv", "filters": 2, "kernel": 3, "stride": 0}], (8, 8),
         r"^blocks\[0\]\.stride=0 is out of range"),
        ([{"type": "conv", "filters": 2, "kernel": 3, "padding": -1}], (8, 8),
         r"^blocks\[0\]\.padding=-1 is out of range"),
        ([{"type": "conv", "kernel": 3}], (8, 8), r"^blocks\[0\]\.filters: missing"),
        ([{"type": "conv", "filters": 2, "kernel": 3, "size": 2}], (8, 8),
         r"^blocks\[0\]\.size: unknown key; allowed: type, filters, kernel, stride, padding"),
        ([{"type": "dense", "filters": 2}], (8, 8), r"^blocks\[0\]\.type='dense' is not allowed"),
        ([{"type": "maxpool", "size": 17}], (8, 8), r"^blocks\[0\]\.size=17 is out of range"),
        ([{"type": "maxpool"}], None, r"^blocks: a conv net needs images"),
        ("conv", (8, 8), r"^blocks='conv' must be a list of blocks"),
    ],
)
def test_impossible_architectures_name_the_key(blocks, image, message):
    with pytest.raises((ValueError, TypeError), match=message):
        NetworkSpec(64, 3, (4,), blocks=blocks, image_shape=image)


def test_float32_conv_net_computes_in_float32(rng):
    spec = NetworkSpec(2 * 6 * 6, 3, (), "relu", image_shape=(2, 6, 6), blocks=[
        {"type": "conv", "filters": 2, "kernel": 3, "padding": 1}, {"type": "avgpool"}])
    net = build_network(spec, rng)
    X = rng.random((4, 72), dtype=np.float32)
    net.loss(X, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    net.backward()
    assert net.output.dtype == np.float32
    assert all(g.dtype == np.float32 for g in net.grads.values())
    np.testing.assert_allclose(net.predict(X),
                               net.predict(X.astype(np.float64)), rtol=0, atol=0)


@pytest.mark.parametrize("blocks", [
    [{"type": "conv", "filters": 30, "kernel": 5}, {"type": "maxpool", "size": 2}],
    [{"type": "conv", "filters": 8, "kernel": 3, "padding": 1}, {"type": "maxpool", "size": 2},
     {"type": "conv", "filters": 16, "kernel": 3, "padding": 1}, {"type": "avgpool", "size": 2}],
], ids=["simple", "two-convs"])
def test_memory_estimate_covers_a_conv_training_step(blocks):
    """The memory check (pipeline.memory) counts a conv net's im2col columns: its estimate of
    a batch's activations is at least what a training step on 1024 rows really allocates
    (traced), and not wildly more."""
    import tracemalloc

    from scratchlab.pipeline.memory import EVAL_ROWS, training_bytes

    spec = NetworkSpec(784, 10, (100,), "relu", init="he", image_shape=(28, 28), blocks=blocks)
    net = build_network(spec, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    X = rng.random((EVAL_ROWS, 784), dtype=np.float32)
    T = np.eye(10, dtype=np.float32)[rng.integers(0, 10, EVAL_ROWS)]
    tracemalloc.start()
    try:
        net.loss(X, T, train=True)
        net.backward()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _, estimate = training_bytes(spec, EVAL_ROWS)
    assert peak <= estimate <= 4 * peak, (peak, estimate)


def test_a_saved_conv_net_loads_back_identical(tmp_path, rng):
    from scratchlab.nn.persistence import load_network, save_network

    spec = NetworkSpec(2 * 7 * 7, 3, (5,), "relu", batchnorm=True, image_shape=(2, 7, 7),
                       blocks=[{"type": "conv", "filters": 3, "kernel": 3, "padding": 1},
                               {"type": "maxpool", "size": 3, "stride": 2}])
    net = build_network(spec, rng)
    X = rng.random((6, 98), dtype=np.float32)
    net.loss(X, np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]])  # BatchNorm statistics move
    save_network(net, tmp_path / "model.npz")
    loaded = load_network(tmp_path / "model.npz")
    assert loaded.spec == spec and loaded.spec.blocks[1].stride == 2
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
