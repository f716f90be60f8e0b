"""The activations' math as plain functions of one array, written once.

The layers compute with them, and the logged MLflow model embeds this file's source in its
own code (``scratchlab.tracking.model``), so a served model runs exactly this arithmetic where
scratchlab is not installed: hence nothing here but the array namespace.
"""

import math

from scratchlab.nn.backend import xp


def sigmoid(x):
    """``1 / (1 + exp(-x))`` on one fresh array. The ``exp`` argument is clipped at
    floor(log(dtype max)) (88 for float32) so it never overflows; there the result is already
    ~1e-38, i.e. 0 to working precision."""
    out = xp.negative(x)
    xp.minimum(out, math.floor(math.log(xp.finfo(x.dtype).max)), out=out)
    xp.exp(out, out=out)
    out += 1.0
    xp.reciprocal(out, out=out)
    return out


def softmax(x):
    """Numerically stable row-wise softmax of a (n, k) array: ``exp`` of ``x - max(x)``, so
    the largest exponent of each row is 0 and nothing overflows."""
    out = x - xp.max(x, axis=1, keepdims=True)
    xp.exp(out, out=out)
    out /= xp.sum(out, axis=1, keepdims=True)
    return out


def log_softmax(x):
    """``log(softmax(x))`` row-wise, as ``x - max(x) - log(sum(exp(x - max(x))))``: exact
    even where ``softmax(x)`` underflows to 0."""
    out = x - xp.max(x, axis=1, keepdims=True)
    out -= xp.log(xp.sum(xp.exp(out), axis=1, keepdims=True))
    return out
