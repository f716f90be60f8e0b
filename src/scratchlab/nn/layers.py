"""Layers: one small class each, ``forward(x, train)`` caches what ``backward(dout)`` needs.

Every layer has ``params`` and ``grads``, dicts of arrays keyed alike (empty when it has no
weights). Like the parameters, the gradient arrays are made once: ``backward`` fills them in
place, so whoever holds them (the optimizer, the ``Network``) always sees the latest values.
``backward(dout)`` returns the gradient with respect to the layer's input. No layer writes into
its input or into an output it has returned, so callers may keep what they pass in or get
back. The arithmetic of inference lives in ``functional`` (shared with the logged model).
Convolution and pooling are in ``scratchlab.nn.conv``.
"""


import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.functional import batchnorm, dense, per_feature, relu, sigmoid, softmax


class Dense:
    """Affine map ``out = x W + b``; without ``b`` (before BatchNorm, whose shift ``beta``
    makes a bias redundant: its gradient is identically zero) just ``out = x W``."""

    def __init__(self, W, b=None) -> None:
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {key: xp.zeros_like(value) for key, value in self.params.items()}
        # Off for the network's first layer, whose dx nobody reads: replaces the product
        # dout W^T, saving a third of that layer's backward work (its widest matrix).
        self.input_grad = True
        self.x = None

    @classmethod
    def initialized(
        cls,
        fan_in: int,
        fan_out: int,
        init,
        rng: numpy.random.Generator,
        dtype: str = "float32",
        bias: bool = True,
    ) -> "Dense":
        """A layer with ``W = init(fan_in, fan_out, rng, dtype)`` and ``b = 0``."""
        b = xp.zeros(fan_out, dtype=dtype) if bias else None
        return cls(init(fan_in, fan_out, rng, dtype), b)

    def forward(self, x, train: bool = False):
        self.x = x
        return dense(x, self.params["W"], self.params.get("b"))

    def backward(self, dout):
        """dW = x^T dout, db = the column sums of dout, dx = dout W^T (``None`` when
        ``input_grad`` is off)."""
        xp.matmul(self.x.T, dout, out=self.grads["W"])
        if "b" in self.grads:
            xp.sum(dout, axis=0, out=self.grads["b"])
        if not self.input_grad:
            return None
        return dout @ self.params["W"].T


class _Stateless:
    """A layer without weights: empty ``params``/``grads``, so a network treats all alike."""

    def __init__(self) -> None:
        self.params: dict = {}
        self.grads: dict = {}


class _KeepsOutput(_Stateless):
    """An activation ``y = f(x)`` whose gradient needs only ``y``: forward keeps it."""

    f = staticmethod(lambda x: x)  # the subclass's function
    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x, train: bool = False):
        self.out = self.f(x)
        return self.out


class Sigmoid(_KeepsOutput):
    """Logistic ``1 / (1 + exp(-x))`` (``functional.sigmoid``, overflow-safe)."""

    f = staticmethod(sigmoid)

    def backward(self, dout):
        """d sigmoid = y (1 - y)."""
        dx = xp.subtract(1.0, self.out, dtype=self.out.dtype)
        dx *= self.out
        dx *= dout
        return dx


class ReLU(_KeepsOutput):
    """``max(0, x)``; the gradient passes only where the output is positive."""

    f = staticmethod(relu)

    def backward(self, dout):
        return dout * (self.out > 0)


class Tanh(_KeepsOutput):
    """Hyperbolic tangent; d tanh = 1 - y^2."""

    f = staticmethod(lambda x: xp.tanh(x))

    def backward(self, dout):
        dx = xp.square(self.out)
        xp.subtract(1.0, dx, out=dx)
        dx *= dout
        return dx


class Linear(_Stateless):
    """Identity activation (regression outputs, linear models)."""

    def forward(self, x, train: bool = False):
        return x

    def backward(self, dout):
        return dout


class Softmax(_KeepsOutput):
    """Row-wise softmax (``functional.softmax``: on ``x - max(x)``, so ``exp`` cannot overflow)."""

    f = staticmethod(softmax)

    def backward(self, dout):
        """Jacobian-vector product: y * (dout - <dout, y>) per row."""
        dx = dout - xp.sum(dout * self.out, axis=1, keepdims=True)
        dx *= self.out
        return dx


class Dropout:
    """Inverted dropout: drop with probability ``rate`` and scale kept units by 1 / (1 - rate)
    while training, so inference is the identity and needs no rescaling."""

    def __init__(self, rate: float, rng: numpy.random.Generator | None = None) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
        self.rate = rate
        self.rng = rng
        self.params: dict = {}
        self.grads: dict = {}
        self.mask = None

    def forward(self, x, train: bool = False):
        if not train or self.rate == 0.0:
            self.mask = None
            return x
        if self.rng is None:
            raise RuntimeError("Dropout needs a numpy.random.Generator (rng) to train")
        keep = xp.asarray(self.rng.random(x.shape, dtype=x.dtype)) >= self.rate
        self.mask = keep.astype(x.dtype)
        self.mask *= 1.0 / (1.0 - self.rate)
        return x * self.mask

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask


class BatchNorm:
    """Batch normalization of each feature, then ``gamma * x_hat + beta``. A feature is a unit
    of (N, D) rows, or a channel of (N, C, H, W) images, whose every pixel counts as one more
    sample of it.

    Training normalizes with the batch statistics and tracks exponential running averages;
    inference normalizes with those running averages, so a prediction does not depend on the
    other rows of its batch.
    """

    def __init__(self, dim: int, momentum: float = 0.9, eps: float = 1e-5, dtype="float32"):
        self.momentum = momentum
        self.eps = eps
        self.params = {"gamma": xp.ones(dim, dtype=dtype), "beta": xp.zeros(dim, dtype=dtype)}
        self.grads = {"gamma": xp.zeros(dim, dtype=dtype), "beta": xp.zeros(dim, dtype=dtype)}
        self.buffers = {
            "running_mean": xp.zeros(dim, dtype=dtype),
            "running_var": xp.ones(dim, dtype=dtype),
        }
        self.x_hat = None
        self.inv_std = None

    def forward(self, x, train: bool = False):
        if train:
            axes = _sample_axes(x)
            mean = xp.mean(x, axis=axes)
            xc = x - per_feature(mean, x.ndim)
            var = xp.mean(xc * xc, axis=axes)
            running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
            running_mean *= self.momentum
            running_mean += (1.0 - self.momentum) * mean
            running_var *= self.momentum
            running_var += (1.0 - self.momentum) * var
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        out, self.x_hat, self.inv_std = batchnorm(x, mean, var, self.params["gamma"],
                                                  self.params["beta"], self.eps)
        return out

    def backward(self, dout):
        """Training-mode gradient: the book's chain of steps (dxc, dstd, dvar, dmu) collected
        into dx = inv_std / m (m dxh - sum dxh - xh sum(dxh xh)), m samples per feature."""
        axes, ndim = _sample_axes(dout), dout.ndim
        m = dout.size // dout.shape[1]
        x_hat = self.x_hat
        xp.sum(dout, axis=axes, out=self.grads["beta"])
        xp.sum(dout * x_hat, axis=axes, out=self.grads["gamma"])
        dx_hat = dout * per_feature(self.params["gamma"], ndim)
        dx = m * dx_hat
        dx -= per_feature(xp.sum(dx_hat, axis=axes), ndim)
        dx -= x_hat * per_feature(xp.sum(dx_hat * x_hat, axis=axes), ndim)
        dx *= per_feature(self.inv_std / m, ndim)
        return dx


def _sample_axes(x) -> tuple[int, ...]:
    """The axes a feature's samples lie along: the batch, and an image's height and width."""
    return (0, *range(2, x.ndim))


class Reshape(_Stateless):
    """Each input row as an array of ``shape``: how a conv net reads the dataset's flat rows
    as images (C, H, W)."""

    def __init__(self, shape) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.input_shape = None

    def forward(self, x, train: bool = False):
        self.input_shape = x.shape
        return x.reshape((x.shape[0], *self.shape))

    def backward(self, dout):
        return dout.reshape(self.input_shape)


class Flatten(Reshape):
    """Each input (an image's feature maps) as one flat row, for the Dense layers after it."""

    def __init__(self) -> None:
        super().__init__((-1,))
