"""Layers: one small class each, ``forward(x, train)`` caches what ``backward(dout)`` needs.

Every layer has ``params`` and ``grads``, dicts of arrays keyed alike (empty when it has no
weights). Like the parameters, the gradient arrays are made once: ``backward`` fills them in
place, so whoever holds them (the optimizer, the ``Network``) always sees the latest values.
``backward(dout)`` returns the gradient with respect to the layer's input. Outputs are fresh
arrays and inputs are never modified, so callers may keep what they pass in or get back.
"""


import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.functional import sigmoid, softmax


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
        out = x @ self.params["W"]
        if "b" in self.params:
            out += self.params["b"]
        return out

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


class ReLU(_Stateless):
    """``max(0, x)``; the gradient passes only where the input was positive."""

    def __init__(self) -> None:
        super().__init__()
        self.mask = None

    def forward(self, x, train: bool = False):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


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
    """Batch normalization over the batch axis, then ``gamma * x_hat + beta``.

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
            mean = xp.mean(x, axis=0)
            xc = x - mean
            var = xp.mean(xc * xc, axis=0)
            running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
            running_mean *= self.momentum
            running_mean += (1.0 - self.momentum) * mean
            running_var *= self.momentum
            running_var += (1.0 - self.momentum) * var
        else:
            xc = x - self.buffers["running_mean"]
            var = self.buffers["running_var"]
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)
        self.x_hat = xc * self.inv_std
        return self.x_hat * self.params["gamma"] + self.params["beta"]

    def backward(self, dout):
        """Training-mode gradient, folded: dx = inv_std/N (N dxh - sum dxh - xh sum(dxh xh))."""
        n = dout.shape[0]
        x_hat = self.x_hat
        xp.sum(dout, axis=0, out=self.grads["beta"])
        xp.sum(dout * x_hat, axis=0, out=self.grads["gamma"])
        dx_hat = dout * self.params["gamma"]
        dx = n * dx_hat
        dx -= xp.sum(dx_hat, axis=0)
        dx -= x_hat * xp.sum(dx_hat * x_hat, axis=0)
        dx *= self.inv_std / n
        return dx
