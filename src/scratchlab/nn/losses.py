"""Losses: ``forward(pred, t) -> float`` (mean over the batch), ``backward() -> dL/dpred``.

Targets ``t`` are (n, k) arrays: one-hot rows for classification, values for regression.
"""

from scratchlab.nn.backend import xp
from scratchlab.nn.functional import log_softmax


class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, fused (the book's ``SoftmaxWithLoss``): it takes the
    logits ``z``, and the gradient collapses to ``(y - t) / N``.

    The loss is computed from ``log y = log_softmax(z)`` (``z`` shifted by each row's maximum,
    minus the log of the row's sum of exponentials), which stays exact where ``y`` itself
    underflows to 0: no ``eps`` inside the log, and no overflow for any finite logits.
    """

    def __init__(self) -> None:
        self.y = None
        self.t = None

    def forward(self, z, t) -> float:
        log_y = log_softmax(z)
        self.y = xp.exp(log_y)
        self.t = t
        return -float(xp.vdot(t, log_y)) / z.shape[0]

    def backward(self):
        dz = self.y - self.t
        dz /= self.t.shape[0]
        return dz


class SigmoidCrossEntropy:
    """Per-output sigmoid + binary cross-entropy (Andrew Ng's one-vs-all logistic cost), fused
    on logits: L = mean over rows of sum_k [softplus(z) - t z], gradient ``(y - t) / N``."""

    def __init__(self) -> None:
        self.y = None
        self.t = None

    def forward(self, z, t) -> float:
        # softplus(z) = max(z, 0) + log1p(exp(-|z|)) never overflows.
        softplus = xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))
        loss = (xp.sum(softplus) - xp.vdot(t, z)) / z.shape[0]
        self.y = 0.5 * (1.0 + xp.tanh(0.5 * z))
        self.t = t
        return float(loss)

    def backward(self):
        dz = self.y - self.t
        dz /= self.t.shape[0]
        return dz


class CrossEntropy:
    """Categorical cross-entropy on probabilities, ``-sum t log(y + eps) / N``; ``eps`` keeps
    ``log(0)`` finite and enters the gradient too so the two agree exactly."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = eps
        self.y = None
        self.t = None

    def forward(self, y, t) -> float:
        self.y = y
        self.t = t
        return float(-xp.vdot(t, xp.log(y + self.eps)) / y.shape[0])

    def backward(self):
        return -self.t / ((self.y + self.eps) * self.t.shape[0])


class MeanSquaredError:
    """Half the squared error summed over outputs, averaged over the batch:
    ``L = 0.5 * sum((y - t)^2) / N``, so the gradient is simply ``(y - t) / N``."""

    def __init__(self) -> None:
        self.y = None
        self.diff = None

    def forward(self, y, t) -> float:
        self.y = y
        self.diff = y - t
        return float(0.5 * xp.vdot(self.diff, self.diff) / y.shape[0])

    def backward(self):
        return self.diff / self.diff.shape[0]
