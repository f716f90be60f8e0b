"""Leslie Smith's learning-rate range test (arXiv 1506.01186, sec. 3.3; fastai's ``lr_find``).

One short run of mini-batches whose lr grows exponentially from ``start_lr`` to ``end_lr``,

    lr_i = start_lr * (end_lr / start_lr) ** (i / (iterations - 1)),

recording each batch's training loss (computed before the batch's update at ``lr_i``, as fastai
records it). The raw losses are noisy, so they are smoothed by a debiased exponential moving
average:

    avg_i = beta avg_(i-1) + (1 - beta) loss_i,      smoothed_i = avg_i / (1 - beta ** (i + 1))

The test stops early once the smoothed loss exceeds ``diverge_factor`` times its lowest value so
far (it has blown up: larger lrs only diverge further) or a loss is NaN/inf. While the lr is too
small the loss barely moves; then it falls; then it turns up, or explodes. :func:`suggest` reads
a learning rate off that curve.

The network's weights are put back when the test ends, however it ends: it measures the
network, it does not train it. The optimizer's state (momentum, moments) is changed, so give it
a fresh optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy

from scratchlab.nn.backend import xp
from scratchlab.nn.network import Network
from scratchlab.spec.training import BATCH_SIZE

BLEW_UP, NOT_FINITE, END_REACHED = "smoothed loss blew up", "loss not finite", "end_lr reached"
VALLEY = "valley: half-way down the longest descent of the smoothed loss"


@dataclass
class RangeTest:
    """The lrs tried, their batch losses and the smoothed curve (equally long), and why the
    test stopped."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stop_reason: str = END_REACHED


def check_range(start_lr: float, end_lr: float, iterations: int) -> None:
    """ValueError unless ``0 < start_lr < end_lr`` and there are at least 10 iterations."""
    if not (math.isfinite(start_lr) and math.isfinite(end_lr) and 0 < start_lr < end_lr):
        raise ValueError(f"start_lr={start_lr}, end_lr={end_lr}: expected 0 < start_lr < end_lr")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 10:
        raise ValueError(f"iterations={iterations!r}: expected an integer >= 10")


def _batches(n: int, batch_size: int, rng: numpy.random.Generator):
    """Index arrays of shuffled mini-batches, epoch after epoch, without end."""
    while True:
        perm = xp.asarray(rng.permutation(n))
        for start in range(0, n, batch_size):
            yield perm[start : start + batch_size]


def lr_range_test(net: Network, optimizer, X, Y, *, batch_size: int,
                  rng: numpy.random.Generator, start_lr: float = 1e-7, end_lr: float = 10.0,
                  iterations: int = 100, beta: float = 0.9,
                  diverge_factor: float = 4.0) -> RangeTest:
    """Run the range test on ``(X, Y)`` with mini-batches of ``batch_size`` drawn by ``rng``;
    ``net``'s weights are restored at the end.

    ``beta`` 0.9 averages about the last 10 batches. (fastai's 0.98 averages 50, half of a
    100-batch test: on digits its smoothed curve lags the raw losses by a decade of lr.)
    """
    check_range(start_lr, end_lr, iterations)
    BATCH_SIZE.check("batch_size", batch_size)
    X = xp.ascontiguousarray(X, dtype=net.dtype)
    Y = xp.ascontiguousarray(Y, dtype=net.dtype)
    lrs = start_lr * (end_lr / start_lr) ** (numpy.arange(iterations) / (iterations - 1))
    batch_size = min(batch_size, X.shape[0])
    batches = _batches(X.shape[0], batch_size, rng)
    # gather buffers reused by every batch, as in ``fit`` (the indices are in range: "clip")
    X_batch = xp.empty((batch_size, X.shape[1]), dtype=net.dtype)
    Y_batch = xp.empty((batch_size, Y.shape[1]), dtype=net.dtype)
    test, avg, lowest = RangeTest(), 0.0, math.inf
    saved = net.state_dict()
    try:
        # overflow on the way to a NaN/inf loss is what the test looks for, not a warning
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for i, lr in enumerate(lrs):
                idx = next(batches)
                m = idx.shape[0]
                optimizer.lr = float(lr)
                loss = net.loss(X.take(idx, axis=0, out=X_batch[:m], mode="clip"),
                                Y.take(idx, axis=0, out=Y_batch[:m], mode="clip"), train=True)
                if not math.isfinite(loss):
                    test.stop_reason = NOT_FINITE
                    break
                net.backward()
                optimizer.update([net.flat_params], [net.flat_grads])
                avg = beta * avg + (1 - beta) * loss
                smoothed = avg / (1 - beta ** (i + 1))
                test.lrs.append(float(lr))
                test.losses.append(float(loss))
                test.smoothed.append(smoothed)
                lowest = min(lowest, smoothed)
                if smoothed > diverge_factor * lowest:
                    test.stop_reason = BLEW_UP
                    break
    finally:
        net.load_state_dict(saved)
    return test


def suggest(test: RangeTest, iterations: int = 100) -> float | None:
    """fastai's *valley* rule: the lr half-way (in log lr) down the longest descent of the
    smoothed loss, leaving out the first tenth of the ``iterations`` and the last 5 points (the
    start is still warming the average up, the end is the blow-up).

    The descent is the longest strictly decreasing subsequence of the smoothed losses, found by
    dynamic programming: ``length[i] = 1 + max(length[j] for j < i with loss[j] > loss[i])``.
    Half-way down it the loss falls fast and the lr is still well below the one that blows
    it up. It reads the whole descent, not one point: the minimum / 10 depends on where the
    curve happens to bottom out (late, when a net saturates rather than explodes; at the start,
    when the curve is flat noise) and the steepest slope on the noise (docs/learning-rates.md
    compares the three on digits). None when there is no descent of at least 3 points.
    """
    lrs = numpy.asarray(test.lrs[iterations // 10 : -5])
    losses = numpy.asarray(test.smoothed[iterations // 10 : -5])
    if len(losses) < 3:
        return None
    length = numpy.ones(len(losses), dtype=int)
    for i in range(1, len(losses)):
        higher = losses[:i] > losses[i]
        if higher.any():
            length[i] = 1 + length[:i][higher].max()
    end = int(numpy.argmax(length))
    if length[end] < 3:
        return None
    start = end - length[end] + 1
    return float(lrs[start + (end - start) // 2])
