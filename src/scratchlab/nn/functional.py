"""The inference math as plain functions of arrays, written once.

The layers compute with them, and the logged MLflow model embeds this file's source in its
own code (``scratchlab.tracking.model``), so a served model runs exactly this arithmetic where
scratchlab is not installed: hence nothing here but the array namespace. Images are channels
first, (N, C, H, W); a "feature" is a column of an (N, D) array or a channel of an image.
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


def relu(x):
    """``max(0, x)``."""
    return x * (x > 0)


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


def dense(x, W, b=None):
    """The affine map ``x W + b`` of (N, D) rows."""
    out = x @ W
    if b is not None:
        out += b
    return out


def per_feature(v, ndim: int):
    """A vector with one value per feature, shaped to broadcast along axis 1 of an array of
    ``ndim`` dimensions: (1, D) for rows, (1, C, 1, 1) for images."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm(x, mean, var, gamma, beta, eps: float):
    """``gamma (x - mean) / sqrt(var + eps) + beta`` per feature; returns the output, the
    normalized ``x_hat`` and ``1 / sqrt(var + eps)`` (what the gradient needs)."""
    inv_std = 1.0 / xp.sqrt(var + eps)
    x_hat = (x - per_feature(mean, x.ndim)) * per_feature(inv_std, x.ndim)
    return x_hat * per_feature(gamma, x.ndim) + per_feature(beta, x.ndim), x_hat, inv_std


def output_size(size: int, window: int, stride: int, padding: int = 0) -> int:
    """Positions of a ``window`` slid by ``stride`` over ``size`` cells padded on both sides."""
    return (size + 2 * padding - window) // stride + 1


def windows(x, window: int, stride: int):
    """The ``window``**2 strided views of images ``x`` (N, C, H, W): view ``(i, j)`` holds, for
    every output position, the pixel at offset ``(i, j)`` inside the window placed there."""
    oh, ow = (output_size(n, window, stride) for n in x.shape[2:])
    return [x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            for i in range(window) for j in range(window)]


def im2col(x, kernel: int, stride: int, padding: int):
    """Images (N, C, H, W) -> columns (N, C*k*k, OH*OW): column ``p`` of image ``n`` holds the
    k x k patch, every channel, that the kernel covers at output position ``p``; a convolution
    is then one matrix product per image. Built as in the book: the pixels that kernel offset
    ``(i, j)`` meets at every output position form one strided view of the padded image."""
    n, c, h, w = x.shape
    oh, ow = output_size(h, kernel, stride, padding), output_size(w, kernel, stride, padding)
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = xp.empty((n, c, kernel * kernel, oh, ow), dtype=x.dtype)
    for k, view in enumerate(windows(x, kernel, stride)):
        cols[:, :, k] = view
    return cols.reshape(n, c * kernel * kernel, oh * ow)


def conv2d(x, W, b, stride: int, padding: int):
    """Cross-correlation of images (N, C, H, W) with ``F`` kernels ``W`` (F, C, k, k), plus one
    bias per kernel (``b`` (F,) or None): (N, F, OH, OW). Returns it and the im2col columns."""
    n, _, h, w = x.shape
    f, _, kernel, _ = W.shape
    cols = im2col(x, kernel, stride, padding)
    out = xp.matmul(W.reshape(f, -1), cols)  # (F, C k k) @ (N, C k k, OH OW): (N, F, OH OW)
    if b is not None:
        out += b[:, None]
    oh, ow = output_size(h, kernel, stride, padding), output_size(w, kernel, stride, padding)
    return out.reshape(n, f, oh, ow), cols


def max_pool2d(x, size: int, stride: int):
    """Each window's maximum, per channel, and which of its ``size``**2 pixels holds it
    (``arg``, in reading order; the first one on ties): where the gradient flows back to."""
    views = windows(x, size, stride)
    out = views[0].copy()
    arg = xp.zeros(out.shape, dtype=xp.uint8)
    for k, view in enumerate(views[1:], start=1):
        # pixel k takes over where it is strictly greater (ties keep the earlier pixel); k is
        # above every earlier index, so a maximum writes it there and keeps arg elsewhere
        xp.maximum(arg, (view > out) * xp.uint8(k), out=arg)
        xp.maximum(out, view, out=out)
    return out, arg


def avg_pool2d(x, size: int, stride: int):
    """Each window's mean, per channel."""
    views = windows(x, size, stride)
    out = views[0].copy()
    for view in views[1:]:
        out += view
    out /= size * size
    return out
