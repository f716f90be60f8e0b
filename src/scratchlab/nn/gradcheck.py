"""Numerical gradient checking: backprop must agree with central differences.

Run in float64: with float32 the rounding error of the finite differences (~1e-7 / h) is
larger than the discrepancies a bug would cause.
"""

from collections.abc import Callable

import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.layers import Dropout
from scratchlab.nn.network import Network


def numerical_gradient(f: Callable[[], float], x, h: float = 1e-5):
    """d f / d x by central differences ``(f(x + h) - f(x - h)) / 2h``, one entry at a time.

    ``f`` takes no argument and reads ``x`` (mutated in place); each entry is restored
    exactly after its two evaluations.
    """
    grad = xp.zeros_like(x)
    for i in numpy.ndindex(x.shape):  # indexes x itself, so views and any layout work
        original = x[i].copy()
        x[i] = original + h
        f_plus = f()
        x[i] = original - h
        f_minus = f()
        x[i] = original
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|), guarded against 0 / 0."""
    scale = float(xp.max(xp.abs(a) + xp.abs(b)))
    return float(xp.max(xp.abs(a - b))) / max(scale, numpy.finfo(numpy.float64).tiny)


def check_gradients(net: Network, X, T, h: float = 1e-5) -> dict[str, float]:
    """Relative error between backprop and numerical gradients for every parameter of ``net``.

    The net must be float64. Dropout masks are drawn once and then frozen, so every loss
    evaluation sees the same sub-network; BatchNorm is checked in training mode (its running
    statistics are restored afterwards, so the net is left as it was).
    """
    if net.dtype != xp.float64:
        raise ValueError(f"check_gradients needs a float64 network, got {net.dtype}")
    X, T = xp.asarray(X, dtype=xp.float64), xp.asarray(T, dtype=xp.float64)
    saved = net.state_dict()
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    net.loss(X, T, train=True)
    try:
        for layer in dropouts:
            layer.forward = _fixed_mask_forward(layer, layer.mask)
        net.loss(X, T, train=True)
        net.backward()
        analytic = {key: grad.copy() for key, grad in net.grads.items()}
        errors = {}
        for key, param in net.params.items():
            numeric = numerical_gradient(lambda: net.loss(X, T, train=True), param, h)
            errors[key] = relative_error(analytic[key], numeric)
        return errors
    finally:
        for layer in dropouts:
            del layer.forward  # unshadow the class's forward
        net.load_state_dict(saved)


def _fixed_mask_forward(layer: Dropout, mask):
    def forward(x, train: bool = False):
        layer.mask = mask if train else None
        return x * mask if train else x

    return forward
