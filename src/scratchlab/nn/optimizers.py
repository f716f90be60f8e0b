"""Optimizers: ``update(params, grads)`` changes the parameter arrays IN PLACE.

``params`` and ``grads`` are dicts keyed alike (``Network.params`` / ``Network.grads``) or
equally long lists (keyed by position). State (velocities, moments) is created lazily per key
with ``zeros_like`` so it shares the parameters' dtype (float32 stays float32), and every step
works through per-key scratch buffers with ``out=`` instead of allocating temporaries.
"""

import math

from scratchlab.nn.backend import xp
from scratchlab.spec.optim import check_optimizer


def _pairs(params, grads):
    """(key, param, grad) triples for dicts or lists alike."""
    if isinstance(params, dict):
        return [(key, p, grads[key]) for key, p in params.items()]
    return [(i, p, g) for i, (p, g) in enumerate(zip(params, grads, strict=True))]


class _Optimizer:
    def __init__(self, lr: float) -> None:
        self.lr = lr
        self._buffers: dict = {}

    def _buffer(self, key, like, slot: str = "tmp"):
        """A persistent array shaped like ``like`` for ``(key, slot)``, zeroed on creation."""
        buf = self._buffers.get((key, slot))
        if buf is None:
            buf = self._buffers[(key, slot)] = xp.zeros_like(like)
        return buf


class SGD(_Optimizer):
    """Plain gradient descent: p <- p - lr g."""

    def update(self, params, grads) -> None:
        for key, p, g in _pairs(params, grads):
            step = self._buffer(key, p)
            xp.multiply(g, self.lr, out=step)
            p -= step


class Momentum(_Optimizer):
    """Heavy ball: v <- m v - lr g; p <- p + v."""

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = momentum

    def _velocity(self, key, p, g):
        """v <- m v - lr g in place; returns v and the scratch buffer holding lr g."""
        v, step = self._buffer(key, p, "v"), self._buffer(key, p)
        v *= self.momentum
        xp.multiply(g, self.lr, out=step)
        v -= step
        return v, step

    def update(self, params, grads) -> None:
        for key, p, g in _pairs(params, grads):
            v, _ = self._velocity(key, p, g)
            p += v


class Nesterov(Momentum):
    """Nesterov momentum in the look-ahead-free form (Sutskever; Keras ``nesterov=True``):
    v <- m v - lr g; p <- p + m v - lr g. First step: p - (1 + m) lr g."""

    def update(self, params, grads) -> None:
        for key, p, g in _pairs(params, grads):
            v, step = self._velocity(key, p, g)
            p -= step
            xp.multiply(v, self.momentum, out=step)
            p += step


def _adaptive_step(p, g, h, step, eps: float, lr: float) -> None:
    """p <- p - lr g / (sqrt(h) + eps), through the scratch buffer ``step`` (AdaGrad, RMSprop)."""
    xp.sqrt(h, out=step)
    step += eps
    xp.divide(g, step, out=step)
    step *= lr
    p -= step


class AdaGrad(_Optimizer):
    """Per-coordinate step lr / (sqrt(h) + eps), h the running sum of squared gradients."""

    def __init__(self, lr: float, eps: float = 1e-7) -> None:
        super().__init__(lr)
        self.eps = eps

    def update(self, params, grads) -> None:
        for key, p, g in _pairs(params, grads):
            h, step = self._buffer(key, p, "h"), self._buffer(key, p)
            xp.square(g, out=step)
            h += step
            _adaptive_step(p, g, h, step, self.eps, self.lr)


class RMSprop(_Optimizer):
    """AdaGrad with a leaky average: h <- rho h + (1 - rho) g^2; p <- p - lr g / (sqrt(h) + eps)."""

    def __init__(self, lr: float, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(lr)
        self.rho = rho
        self.eps = eps

    def update(self, params, grads) -> None:
        for key, p, g in _pairs(params, grads):
            h, step = self._buffer(key, p, "h"), self._buffer(key, p)
            # h += (1 - rho) (g^2 - h), one fewer pass than scaling h and g^2 separately.
            xp.square(g, out=step)
            step -= h
            step *= 1.0 - self.rho
            h += step
            _adaptive_step(p, g, h, step, self.eps, self.lr)


class Adam(_Optimizer):
    """Adam with the bias correction folded into the step size (Kingma & Ba, sec. 2; Keras):
    m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    p <- p - lr_t m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t).

    The moments are stored unnormalized, M = m / (1 - b1) and V = v / (1 - b2), so each
    update is ``M = b1 M + g`` (no scaling of g) and the constant factors move into two
    scalars: the same step in 10 array passes instead of 12 (it is the optimizer's hot spot).
    """

    def __init__(
        self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7
    ) -> None:
        super().__init__(lr)
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.t = 0

    def update(self, params, grads) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * math.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        # m / (sqrt(v) + eps) = (1 - b1) / sqrt(1 - b2) * M / (sqrt(V) + eps / sqrt(1 - b2))
        scale = lr_t * (1.0 - b1) / math.sqrt(1.0 - b2)
        eps = self.eps / math.sqrt(1.0 - b2)
        for key, p, g in _pairs(params, grads):
            M, V = self._buffer(key, p, "m"), self._buffer(key, p, "v")
            step = self._buffer(key, p)
            M *= b1
            M += g
            xp.square(g, out=step)
            V *= b2
            V += step
            xp.sqrt(V, out=step)
            step += eps
            xp.divide(M, step, out=step)
            step *= scale
            p -= step


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def make_optimizer(name: str, lr: float, **hyper: float):
    """The optimizer called ``name`` (conf/optimizer/*.yaml), its hyperparameters checked by
    the rules of ``scratchlab.spec.optim``."""
    hyper = check_optimizer(name, {"lr": lr, **hyper})
    return OPTIMIZERS[name](**hyper)
