"""Weight initializers: ``init(fan_in, fan_out, rng, dtype, shape=None) -> W``.

``W`` has ``shape``, by default (fan_in, fan_out) (a Dense layer's); a conv layer passes its
kernels' shape (F, C, k, k) with fan-in C k k and fan-out F k k. Every initializer draws from
the ``numpy.random.Generator`` it is given, never from global state, so one seed reproduces a
network bit for bit. Biases are always initialized to zero.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy

from scratchlab.core.rules import Choice
from scratchlab.nn.backend import xp
from scratchlab.spec.network import INIT_SCALE, INITIALIZERS

Initializer = Callable[..., Any]


def _standard_normal(fan_in: int, fan_out: int, rng: numpy.random.Generator, dtype: str,
                     shape=None):
    return xp.asarray(rng.standard_normal(shape or (fan_in, fan_out), dtype=dtype))


def he(fan_in: int, fan_out: int, rng: numpy.random.Generator, dtype: str = "float32",
       shape=None):
    """Normal with std sqrt(2 / fan_in): keeps the activation variance constant under ReLU."""
    W = _standard_normal(fan_in, fan_out, rng, dtype, shape)
    W *= math.sqrt(2.0 / fan_in)
    return W


def xavier(fan_in: int, fan_out: int, rng: numpy.random.Generator, dtype: str = "float32",
           shape=None):
    """Glorot normal, std sqrt(2 / (fan_in + fan_out)): balances forward and backward variance
    for sigmoid/tanh. (The uniform Glorot variant is ``epsilon``.)"""
    W = _standard_normal(fan_in, fan_out, rng, dtype, shape)
    W *= math.sqrt(2.0 / (fan_in + fan_out))
    return W


def normal(
    fan_in: int,
    fan_out: int,
    rng: numpy.random.Generator,
    dtype: str = "float32",
    shape=None,
    scale: float = 0.01,
):
    """Small normal, std ``scale``: the classic "weight_init_std = 0.01" of the book."""
    W = _standard_normal(fan_in, fan_out, rng, dtype, shape)
    W *= scale
    return W


def epsilon(fan_in: int, fan_out: int, rng: numpy.random.Generator, dtype: str = "float32",
            shape=None):
    """Andrew Ng's symmetric-breaking uniform init on [-e, e], e = sqrt(6) / sqrt(L_in + L_out)."""
    e = math.sqrt(6.0) / math.sqrt(fan_in + fan_out)
    U = xp.asarray(rng.random(shape or (fan_in, fan_out), dtype=dtype))
    U *= 2.0 * e
    U -= e
    return U


BY_NAME: dict[str, Initializer] = {
    "he": he,
    "xavier": xavier,
    "normal": normal,
    "epsilon": epsilon,
}


def get_initializer(name: str, scale: float = 0.01) -> Initializer:
    """The initializer called ``name``; ``scale`` is used only by ``normal``."""
    Choice(INITIALIZERS).check("init", name)
    if name == "normal":
        return partial(normal, scale=INIT_SCALE.check("init_scale", scale))
    return BY_NAME[name]
