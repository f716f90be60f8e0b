"""Mini-batch training: ``fit(net, optimizer, X, Y, ...) -> History``, and ``measure``.

Epochs are numbered from 0, so ``history.history["val_loss"][history.best_epoch]`` is the best
value. The train ``loss``/``accuracy`` of an epoch are running means over its mini-batches
(weighted by batch size, measured before each batch's update, with dropout active), as in
Keras: free to compute, but not the loss of the end-of-epoch weights; ``val_*`` metrics are
computed on the end-of-epoch weights in inference mode.
"""

import math
from collections.abc import Sequence

import numpy

from scratchlab.core.progress import progress_bar
from scratchlab.nn.backend import xp
from scratchlab.nn.callbacks import DIVERGED, Callback, History, chance_loss
from scratchlab.nn.network import Network
from scratchlab.spec.training import BATCH_SIZE, EPOCHS


def _correct(net: Network, labels) -> int:
    """Correctly classified rows of the last ``net.loss`` batch (argmax, or > 0.5 if k == 1)."""
    out = net.output
    if out.shape[1] == 1:
        return int(xp.count_nonzero((out[:, 0] > 0.5) == (labels > 0.5)))
    return int(xp.count_nonzero(out.argmax(axis=1) == labels))


def _labels(Y):
    return Y[:, 0] if Y.shape[1] == 1 else xp.argmax(Y, axis=1)


def _as_arrays(net: Network, X, Y, what: str):
    X = xp.ascontiguousarray(X, dtype=net.dtype)
    Y = xp.ascontiguousarray(Y, dtype=net.dtype)
    if X.ndim != 2 or X.shape[1] != net.spec.input_dim:
        raise ValueError(f"{what}: X must be (n, {net.spec.input_dim}), got {X.shape}")
    if Y.ndim != 2 or Y.shape != (X.shape[0], net.spec.output_dim):
        raise ValueError(
            f"{what}: Y must be (n, {net.spec.output_dim}) (one-hot for classification), "
            f"got {Y.shape} for {X.shape[0]} rows"
        )
    return X, Y


def measure(net: Network, X, Y, batch_size: int = 1024) -> dict[str, float]:
    """Inference-mode ``loss`` (with the L2 term, like training) and ``accuracy``
    (classification only) over all of ``X``."""
    X, Y = _as_arrays(net, X, Y, "measure")
    n = X.shape[0]
    labels = _labels(Y) if net.classification else None
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        loss_sum += net.loss(X[start:stop], Y[start:stop], train=False) * (stop - start)
        if labels is not None:
            correct += _correct(net, labels[start:stop])
    logs = {"loss": loss_sum / n}
    if labels is not None:
        logs["accuracy"] = correct / n
    return logs


def fit(
    net: Network,
    optimizer,
    X,
    Y,
    *,
    epochs: int,
    batch_size: int,
    rng: numpy.random.Generator,
    validation_data: tuple | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> History:
    """Train ``net`` in place with shuffled mini-batches and return its History.

    Each epoch draws one permutation from ``rng`` and visits every sample once (the last,
    partial batch included). A NaN/inf batch loss stops training as *diverged*, without
    raising; so may a :class:`DivergenceGuard`. Each batch ends with
    ``optimizer.update([net.flat_params], [net.flat_grads])``. ``callbacks`` see every epoch's
    metrics in order and may stop training; all of them get ``on_train_end`` however it ends.
    """
    EPOCHS.check("epochs", epochs)
    BATCH_SIZE.check("batch_size", batch_size)
    X, Y = _as_arrays(net, X, Y, "fit")
    if validation_data is not None:
        validation_data = _as_arrays(net, *validation_data, "validation_data")
    n = X.shape[0]
    batch_size = min(batch_size, n)
    history = History(history={key: [] for key in _metric_keys(net, validation_data)},
                      chance_loss=chance_loss(Y, net.spec),
                      updates_per_epoch=math.ceil(n / batch_size))
    for callback in callbacks:
        callback.on_train_begin(net, history)

    labels = _labels(Y) if net.classification else None
    # One gather buffer per array, reused by every batch (the last one uses a leading slice).
    X_batch = xp.empty((batch_size, X.shape[1]), dtype=net.dtype)
    Y_batch = xp.empty((batch_size, Y.shape[1]), dtype=net.dtype)
    params, grads = [net.flat_params], [net.flat_grads]

    # A live bar on a terminal, one log line per epoch elsewhere (``core.progress``).
    bar = progress_bar(epochs, "train", "epoch", enabled=progress, every_step=True)
    # Overflow on the way to a NaN/inf loss is expected and handled below as divergence.
    # (NumPy's own errstate: it governs NumPy's warnings only, CuPy does not raise them.)
    with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(epochs):
            perm = xp.asarray(rng.permutation(n))
            loss_sum, correct, finite = 0.0, 0, True
            for start in range(0, n, batch_size):
                for callback in callbacks:
                    callback.on_batch_begin(epoch, start // batch_size)
                idx = perm[start : start + batch_size]
                m = idx.shape[0]
                # mode="clip": with the default "raise", NumPy buffers ``out`` (a hidden copy
                # per batch); the indices come from a permutation, so none is out of range.
                xb = X.take(idx, axis=0, out=X_batch[:m], mode="clip")
                tb = Y.take(idx, axis=0, out=Y_batch[:m], mode="clip")
                batch_loss = net.loss(xb, tb, train=True)
                if history.initial_loss is None:
                    history.initial_loss = batch_loss
                if not math.isfinite(batch_loss):
                    loss_sum, finite = batch_loss, False
                    break
                net.backward()
                optimizer.update(params, grads)
                loss_sum += batch_loss * m
                if labels is not None:
                    correct += _correct(net, labels[idx])

            logs = {"loss": loss_sum / n if finite else float(loss_sum)}
            if labels is not None:
                logs["accuracy"] = correct / n if finite else math.nan
            if validation_data is not None and finite:
                logs.update({f"val_{k}": v for k, v in measure(net, *validation_data).items()})
            for key in history.history:
                history.history[key].append(logs.get(key, math.nan))
            history.epochs_run = epoch + 1
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            bar.update()
            reasons = [callback.on_epoch_end(epoch, logs, net, history) for callback in callbacks]
            if not finite or DIVERGED in reasons:
                history.stop_reason = DIVERGED
            else:
                history.stop_reason = next(filter(None, reasons), None)
            if history.stop_reason is not None:
                break
    bar.close()

    history.best_epoch = _best_epoch(history)
    for callback in callbacks:
        callback.on_train_end(net, history)
    return history


def _metric_keys(net: Network, validation_data) -> list[str]:
    keys = ["loss", "accuracy"] if net.classification else ["loss"]
    if validation_data is not None:
        keys += [f"val_{k}" for k in keys]
    return keys


def _best_epoch(history: History) -> int | None:
    """Epoch of the lowest finite ``val_loss`` (``loss`` without validation data)."""
    values = history.history.get("val_loss") or history.history["loss"]
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    return min(finite)[1] if finite else None
