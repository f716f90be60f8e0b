"""Convolution and pooling layers on images (N, C, H, W), the book's chapter 7 with im2col.

``Conv2D`` unrolls every k x k patch of its input into a column (``functional.im2col``), so the
convolution is a matrix product per image; its backward is two more products, and ``col2im``
(im2col's adjoint) adds the column gradients back onto the pixels they came from. The pools
visit their windows as ``size``**2 strided views of the input (``functional.windows``).
"""

import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.functional import avg_pool2d, conv2d, max_pool2d, output_size, windows


def col2im(cols, shape, kernel: int, stride: int, padding: int):
    """The adjoint of ``im2col``: columns (N, C*k*k, OH*OW) -> images of ``shape`` (N, C, H, W),
    each column's patch added onto the pixels it was read from (where patches overlap, their
    values sum)."""
    n, c, h, w = shape
    oh, ow = output_size(h, kernel, stride, padding), output_size(w, kernel, stride, padding)
    cols = cols.reshape(n, c, kernel * kernel, oh, ow)
    x = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for k, view in enumerate(windows(x, kernel, stride)):
        view += cols[:, :, k]
    return x[:, :, padding : padding + h, padding : padding + w] if padding else x


class Conv2D:
    """``filters`` kernels W (F, C, k, k), slid by ``stride`` over the input padded with
    ``padding`` zeros, plus a bias per kernel (none before BatchNorm, like ``Dense``)."""

    def __init__(self, W, b=None, stride: int = 1, padding: int = 0) -> None:
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {key: xp.zeros_like(value) for key, value in self.params.items()}
        self.stride, self.padding = stride, padding
        # Off when this is the network's first layer: replaces the product W^T dout and its
        # col2im, the most expensive part of the layer's backward.
        self.input_grad = True
        self.input_shape = None
        self.cols = None

    @classmethod
    def initialized(cls, channels: int, filters: int, kernel: int, init,
                    rng: numpy.random.Generator, dtype: str = "float32", bias: bool = True,
                    stride: int = 1, padding: int = 0) -> "Conv2D":
        """W drawn by ``init`` for fan-in C k k and fan-out F k k (every input pixel feeds
        F k k outputs), ``b = 0``."""
        fan_in, fan_out = channels * kernel * kernel, filters * kernel * kernel
        W = init(fan_in, fan_out, rng, dtype, shape=(filters, channels, kernel, kernel))
        return cls(W, xp.zeros(filters, dtype=dtype) if bias else None, stride, padding)

    def forward(self, x, train: bool = False):
        self.input_shape = x.shape
        out, self.cols = conv2d(x, self.params["W"], self.params.get("b"), self.stride,
                                self.padding)
        return out

    def backward(self, dout):
        """With D = dout as (N, F, OH*OW) and cols the im2col columns (N, C k k, OH*OW):
        dW = sum_n D_n cols_n^T, db = the sum of D over images and positions,
        dx = col2im(W^T D) (``None`` when ``input_grad`` is off)."""
        n, f = dout.shape[:2]
        d = dout.reshape(n, f, -1)
        W = self.params["W"]
        xp.sum(xp.matmul(d, self.cols.transpose(0, 2, 1)), axis=0,
               out=self.grads["W"].reshape(f, -1))
        if "b" in self.grads:
            xp.sum(d, axis=(0, 2), out=self.grads["b"])
        if not self.input_grad:
            return None
        dcols = xp.matmul(W.reshape(f, -1).T, d)
        return col2im(dcols, self.input_shape, W.shape[2], self.stride, self.padding)


class MaxPool2D:
    """The maximum of each ``size`` x ``size`` window, slid by ``stride``, per channel; the
    gradient flows back to the pixel that was the maximum (the first one on ties)."""

    def __init__(self, size: int, stride: int) -> None:
        self.size, self.stride = size, stride
        self.params: dict = {}
        self.grads: dict = {}
        self.input_shape = None
        self.arg = None

    def forward(self, x, train: bool = False):
        self.input_shape = x.shape
        out, self.arg = max_pool2d(x, self.size, self.stride)
        return out

    def backward(self, dout):
        dx = xp.zeros(self.input_shape, dtype=dout.dtype)
        for k, view in enumerate(windows(dx, self.size, self.stride)):
            if self.stride >= self.size:  # windows apart: write, each pixel has one window
                xp.multiply(dout, self.arg == k, out=view)
            else:  # overlapping windows add up
                view += dout * (self.arg == k)
        return dx


class AvgPool2D:
    """The mean of each ``size`` x ``size`` window, slid by ``stride``, per channel; each pixel
    of a window gets ``1 / size**2`` of its gradient."""

    def __init__(self, size: int, stride: int) -> None:
        self.size, self.stride = size, stride
        self.params: dict = {}
        self.grads: dict = {}
        self.input_shape = None

    def forward(self, x, train: bool = False):
        self.input_shape = x.shape
        return avg_pool2d(x, self.size, self.stride)

    def backward(self, dout):
        share = dout / (self.size * self.size)
        dx = xp.zeros(self.input_shape, dtype=dout.dtype)
        for view in windows(dx, self.size, self.stride):
            if self.stride >= self.size:  # windows apart: write, each pixel has one window
                view[...] = share
            else:  # overlapping windows add up
                view += share
        return dx
