"""The engine's in-place and fused forms compute the same values as the plain formulas."""

import numpy as np
import pytest

from scratchlab.nn.layers import Dense
from scratchlab.nn.losses import SoftmaxCrossEntropy


def reference_softmax_ce(z, t):
    """Per-row shift by the row's own maximum, reductions along the class axis."""
    z = z.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -float(np.sum(t * log_y)) / len(z), np.exp(log_y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spread", [3.0, 200.0])
def test_softmax_cross_entropy_matches_the_per_row_formula(dtype, spread):
    """spread 200: rows' largest logits lie far apart (a shift by the batch's maximum would
    leave some rows with all-underflowing exponentials; the per-row shift keeps them exact)."""
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((64, 10)) + spread * rng.standard_normal((64, 1))).astype(dtype)
    t = np.eye(10, dtype=dtype)[rng.integers(0, 10, 64)]
    loss = SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss.forward(z, t)
    expected, y = reference_softmax_ce(z, t)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    assert value == pytest.approx(expected, rel=rtol)
    assert loss.y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(loss.y, y, rtol=rtol, atol=1e-30)
    np.testing.assert_allclose(loss.backward(), (y - t) / 64, rtol=rtol, atol=1e-12)


def test_softmax_cross_entropy_nan_logits_give_a_nan_loss():
    z = np.zeros((3, 4), dtype=np.float32)
    z[1, 2] = np.nan
    t = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    assert np.isnan(SoftmaxCrossEntropy().forward(z, t))


def test_dense_bias_gradient_is_the_column_sum():
    rng = np.random.default_rng(1)
    dense = Dense(rng.standard_normal((6, 5)).astype(np.float32), np.zeros(5, np.float32))
    x = rng.standard_normal((7, 6)).astype(np.float32)
    dout = rng.standard_normal((7, 5)).astype(np.float32)
    dense.forward(x, train=True)
    dx = dense.backward(dout)
    np.testing.assert_allclose(dense.grads["b"], dout.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(dense.grads["W"], x.T @ dout, rtol=1e-5)
    np.testing.assert_allclose(dx, dout @ dense.params["W"].T, rtol=1e-5)
