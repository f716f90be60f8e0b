"""Numerical gradient checking: backprop must agree with central differences.

Run in float64: with float32 the rounding error of the finite differences (~1e-7 / h) is
larger than the discrepancies a bug would cause.

A ReLU is not differentiable at 0, nor a max-pool where two pixels of a window tie: when
nudging one weight by ``h`` moves some ReLU input across 0, or hands a window's maximum to
another pixel, the central difference straddles the kink and disagrees with backprop although
backprop is right. :func:`check_gradients` watches those choices (which ReLU outputs are
positive, which pixel each max-pool window picked) during every nudge; an entry whose nudge
changes one is retried with a step 100 times smaller, then left out (and counted).

A large network (a conv net's first Dense layer has 432,000 weights) can be checked on a
random sample of each parameter's entries (``max_entries``).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.conv import MaxPool2D
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
    """Relative error per parameter, how many entries each left out at a kink, and how many
    it checked."""

    errors: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)


def _choices(layer):
    """The piecewise layer's current pieces: which ReLU outputs are positive, which pixel each
    max-pool window took."""
    return layer.out > 0 if isinstance(layer, ReLU) else layer.arg


def check_gradients(net: Network, X, T, h: float = 1e-5, max_entries: int | None = None,
                    seed: int = 0) -> GradientCheck:
    """Compare backprop with central differences for every parameter of ``net`` (float64),
    on all its entries or on ``max_entries`` of them drawn at random (``seed``).

    Dropout masks are drawn once and then frozen, so every loss evaluation sees the same
    sub-network; BatchNorm is checked in training mode. The net is left as it was.
    """
    if net.dtype != xp.float64:
        raise ValueError(f"check_gradients needs a float64 network, got {net.dtype}")
    X, T = xp.asarray(X, dtype=xp.float64), xp.asarray(T, dtype=xp.float64)
    saved = net.state_dict()
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    piecewise = [layer for layer in net.layers if isinstance(layer, ReLU | MaxPool2D)]
    sample = numpy.random.default_rng(seed)
    net.loss(X, T, train=True)
    try:
        for layer in dropouts:
            layer.forward = _fixed_mask_forward(layer, layer.mask)
        net.loss(X, T, train=True)
        net.backward()
        analytic = {key: grad.copy() for key, grad in net.grads.items()}
        pieces = [_choices(layer).copy() for layer in piecewise]

        def loss() -> float:
            return net.loss(X, T, train=True)

        def crossed() -> bool:
            return any(not xp.array_equal(_choices(layer), chosen)
                       for layer, chosen in zip(piecewise, pieces, strict=True))

        result = GradientCheck()
        for key, param in net.params.items():
            entries = [numpy.unravel_index(i, param.shape) for i in sorted(
                range(param.size) if max_entries is None or param.size <= max_entries
                else sample.choice(param.size, max_entries, replace=False))]
            numeric, keep = _numeric(loss, crossed, param, h, entries)
            backprop = analytic[key][tuple(numpy.array(entries).T)]
            result.errors[key] = relative_error(backprop[keep], xp.asarray(numeric[keep]))
            result.skipped[key] = len(entries) - int(xp.count_nonzero(keep))
            result.checked[key] = len(entries)
        return result
    finally:
        for layer in dropouts:
            del layer.forward  # unshadow the class's forward
        net.load_state_dict(saved)


def _numeric(loss, crossed, param, h: float, entries: list):
    """Central differences for the ``entries`` (indices) of ``param``, and which are
    trustworthy (no kink crossed): two arrays indexed like ``analytic[entries]``."""
    numeric = numpy.zeros(len(entries))
    keep = numpy.ones(len(entries), dtype=bool)
    for n, i in enumerate(entries):
        for step in (h, *(h * r for r in RETRY_STEPS)):
            value = _watched(loss, crossed, param, i, step)
            if value is not None:
                numeric[n] = value
                break
        else:
            keep[n] = False
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
