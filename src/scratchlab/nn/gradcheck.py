"""Numerical gradient checking: backprop must agree with central differences.

Run in float64: with float32 the rounding error of the finite differences (~1e-7 / h) is
larger than the discrepancies a bug would cause.

A ReLU is not differentiable at 0: when nudging one weight by ``h`` moves some ReLU input
across 0, the central difference straddles the kink and disagrees with backprop although
backprop is right. :func:`check_gradients` watches the ReLU masks during every nudge; an entry
whose nudge flips one is retried with a step 100 times smaller, then left out (and counted).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.layers import Dropout, ReLU
from scratchlab.nn.network import Network

RETRY_STEPS = (1e-2, 1e-4)  # fractions of h tried when a nudge crosses a kink


def numerical_gradient(f: Callable[[], float], x, h: float = 1e-5):
    """d f / d x by central differences ``(f(x + h) - f(x - h)) / 2h``, one entry at a time.

    ``f`` takes no argument and reads ``x`` (mutated in place); each entry is restored
    exactly after its two evaluations.
    """
    grad = xp.zeros_like(x)
    for i in numpy.ndindex(x.shape):  # indexes x itself, so views and any layout work
        grad[i] = _central(f, x, i, h)
    return grad


def _central(f: Callable[[], float], x, i, h: float) -> float:
    original = x[i].copy()
    x[i] = original + h
    f_plus = f()
    x[i] = original - h
    f_minus = f()
    x[i] = original
    return (f_plus - f_minus) / (2 * h)


def relative_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|), guarded against 0 / 0."""
    scale = float(xp.max(xp.abs(a) + xp.abs(b))) if a.size else 0.0
    diff = float(xp.max(xp.abs(a - b))) if a.size else 0.0
    return diff / max(scale, numpy.finfo(numpy.float64).tiny)


@dataclass
class GradientCheck:
    """Relative error per parameter, and how many entries each left out at a ReLU kink."""

    errors: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def check_gradients(net: Network, X, T, h: float = 1e-5) -> GradientCheck:
    """Compare backprop with central differences for every parameter of ``net`` (float64).

    Dropout masks are drawn once and then frozen, so every loss evaluation sees the same
    sub-network; BatchNorm is checked in training mode. The net is left as it was.
    """
    if net.dtype != xp.float64:
        raise ValueError(f"check_gradients needs a float64 network, got {net.dtype}")
    X, T = xp.asarray(X, dtype=xp.float64), xp.asarray(T, dtype=xp.float64)
    saved = net.state_dict()
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    relus = [layer for layer in net.layers if isinstance(layer, ReLU)]
    net.loss(X, T, train=True)
    try:
        for layer in dropouts:
            layer.forward = _fixed_mask_forward(layer, layer.mask)
        net.loss(X, T, train=True)
        net.backward()
        analytic = {key: grad.copy() for key, grad in net.grads.items()}
        masks = [layer.mask.copy() for layer in relus]

        def loss() -> float:
            return net.loss(X, T, train=True)

        def crossed() -> bool:
            return any(not xp.array_equal(r.mask, m) for r, m in zip(relus, masks, strict=True))

        result = GradientCheck()
        for key, param in net.params.items():
            numeric, keep = _numeric(loss, crossed, param, h)
            result.errors[key] = relative_error(analytic[key][keep], numeric[keep])
            result.skipped[key] = int(keep.size - xp.count_nonzero(keep))
        return result
    finally:
        for layer in dropouts:
            del layer.forward  # unshadow the class's forward
        net.load_state_dict(saved)


def _numeric(loss, crossed, param, h: float):
    """Central differences for ``param``, and which entries are trustworthy (no kink crossed)."""
    numeric = xp.zeros_like(param)
    keep = xp.ones(param.shape, dtype=bool)
    for i in numpy.ndindex(param.shape):
        for step in (h, *(h * r for r in RETRY_STEPS)):
            value = _watched(loss, crossed, param, i, step)
            if value is not None:
                numeric[i] = value
                break
        else:
            keep[i] = False
    return numeric, keep


def _watched(loss, crossed, param, i, step: float) -> float | None:
    """The central difference at ``i``, or None if either nudge flipped a ReLU mask."""
    flipped = []

    def f() -> float:
        value = loss()
        flipped.append(crossed())
        return value

    value = _central(f, param, i, step)
    return None if any(flipped) else value


def _fixed_mask_forward(layer: Dropout, mask):
    def forward(x, train: bool = False):
        layer.mask = mask if train else None
        return x * mask if train else x

    return forward
