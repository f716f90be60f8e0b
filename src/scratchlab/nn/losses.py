"""Losses: ``forward(pred, t) -> float`` (mean over the batch), ``backward() -> dL/dpred``.

Targets ``t`` are (n, k) arrays: one-hot rows for classification, values for regression.
"""

from scratchlab.nn.backend import xp
from scratchlab.nn.layers import ones_vector


class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, fused: takes logits, and the gradient collapses to
    ``(y - t) / N``, cheaper and more stable than chaining Softmax and CrossEntropy.

    ``exp`` is taken of ``z - max(z)`` over the whole batch, so it cannot overflow; only when
    some row's largest logit lies so far below the batch's that the row's exponentials sum to
    less than ``_SMALLEST_SUM`` (their precision would suffer) does it shift each row by its
    own maximum instead. Row sums are ``y @ 1``: on (N, k) arrays with a short k, BLAS sums
    rows several times faster than a reduction along the last axis.
    """

    _SMALLEST_SUM = 1e-30

    def __init__(self) -> None:
        self.y = None
        self.t = None

    def forward(self, z, t) -> float:
        ones = ones_vector(z.shape[1], z.dtype)
        shifted = z - z.max()
        y = xp.exp(shifted)
        row_sum = y @ ones
        if row_sum.min() < self._SMALLEST_SUM:
            shifted = z - z.max(axis=1, keepdims=True)
            y = xp.exp(shifted)
            row_sum = y @ ones
        row_sum = row_sum[:, None]
        y /= row_sum
        # log y = shifted - log(row_sum): exact where y itself would underflow to 0.
        shifted -= xp.log(row_sum)
        self.y = y
        self.t = t
        return -float(xp.vdot(t, shifted)) / z.shape[0]

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
