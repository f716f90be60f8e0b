"""Mini-batch training: ``fit`` with early stopping, divergence detection and a History.

Epochs are numbered from 0, so ``history.history["val_loss"][history.best_epoch]`` is the best
value. The train ``loss``/``accuracy`` of an epoch are running means over its mini-batches
(weighted by batch size, measured before each batch's update, with dropout active), as in
Keras: free to compute, but not the loss of the end-of-epoch weights; ``val_*`` metrics are
computed on the end-of-epoch weights in inference mode.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy
from tqdm.auto import tqdm

from scratchlab.errors import ConfigError
from scratchlab.nn.backend import xp
from scratchlab.nn.network import Network

MONITORS = ("loss", "val_loss", "accuracy", "val_accuracy")


@dataclass
class History:
    """Per-epoch metrics and how training ended."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    best_epoch: int | None = None
    stopped_early: bool = False
    diverged: bool = False
    diverged_epoch: int | None = None


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best`` the best epoch's weights are put back when training ends
    (stopped early or not). ``*accuracy`` monitors are maximized, ``*loss`` minimized."""

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    best: float | None = field(default=None, init=False)
    best_epoch: int | None = field(default=None, init=False)
    best_state: dict | None = field(default=None, init=False, repr=False)
    wait: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        key = "train.early_stopping"
        if self.monitor not in MONITORS:
            raise ConfigError(
                f"{key}.monitor: got {self.monitor!r}; allowed: {', '.join(MONITORS)}"
            )
        if (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise ConfigError(f"{key}.patience: must be an integer >= 1, got {self.patience!r}")
        if not isinstance(self.min_delta, int | float) or self.min_delta < 0:
            raise ConfigError(f"{key}.min_delta: must be a number >= 0, got {self.min_delta!r}")

    @property
    def maximize(self) -> bool:
        return self.monitor.endswith("accuracy")

    def reset(self) -> None:
        self.best, self.best_epoch, self.best_state, self.wait = None, None, None, 0

    def update(self, epoch: int, logs: dict[str, float], net: Network) -> bool:
        """Record this epoch; True when training should stop."""
        value = logs[self.monitor]
        if math.isfinite(value) and (self.best is None or self._improved(value)):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = net.state_dict()
            return False
        self.wait += 1
        return self.wait >= self.patience

    def _improved(self, value: float) -> bool:
        if self.maximize:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def restore(self, net: Network) -> None:
        if self.restore_best and self.best_state is not None:
            net.load_state_dict(self.best_state)


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


def evaluate(net: Network, X, Y, batch_size: int = 1024) -> dict[str, float]:
    """Inference-mode ``loss`` (with the L2 term, like training) and ``accuracy``
    (classification only) over all of ``X``."""
    X, Y = _as_arrays(net, X, Y, "evaluate")
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
    early_stopping: EarlyStopping | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    divergence_factor: float = 1e3,
    progress: bool = True,
) -> History:
    """Train ``net`` in place with shuffled mini-batches and return its History.

    Each epoch draws one permutation from ``rng`` and visits every sample once (the last,
    partial batch included). Training stops as *diverged* — without raising — when a batch
    loss is NaN/inf or an epoch's loss exceeds ``divergence_factor`` times the initial loss:
    that of the first mini-batch, before any update. (The first epoch's mean is no reference:
    with a huge learning rate it is already blown up by the steps taken within it.)
    ``on_epoch_end(epoch, logs)`` runs once per epoch, after the metrics are known. Each
    batch ends with ``optimizer.update([net.flat_params], [net.flat_grads])``. With
    ``early_stopping`` (and ``restore_best``) the best weights are restored however training
    ends: completed, stopped early, or diverged.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"train.epochs: must be an integer >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"train.batch_size: must be an integer >= 1, got {batch_size!r}")
    if not divergence_factor > 1:
        raise ConfigError(f"train.divergence_factor: must be > 1, got {divergence_factor!r}")
    X, Y = _as_arrays(net, X, Y, "fit")
    if validation_data is not None:
        validation_data = _as_arrays(net, *validation_data, "validation_data")
    if early_stopping is not None:
        if early_stopping.monitor.startswith("val_") and validation_data is None:
            raise ConfigError(
                f"train.early_stopping.monitor: {early_stopping.monitor!r} needs validation data"
            )
        if early_stopping.monitor.endswith("accuracy") and not net.classification:
            raise ConfigError(
                "train.early_stopping.monitor: accuracy is only defined for classification"
            )
        early_stopping.reset()

    n = X.shape[0]
    batch_size = min(batch_size, n)
    labels = _labels(Y) if net.classification else None
    # One gather buffer per array, reused by every batch (the last one uses a leading slice).
    X_batch = xp.empty((batch_size, X.shape[1]), dtype=net.dtype)
    Y_batch = xp.empty((batch_size, Y.shape[1]), dtype=net.dtype)
    params, grads = [net.flat_params], [net.flat_grads]
    history = History(history={key: [] for key in _metric_keys(net, validation_data)})
    initial_loss = None

    bar = tqdm(range(epochs), desc="train", unit="epoch", disable=not progress, mininterval=0)
    # Overflow on the way to a NaN/inf loss is expected and handled below as divergence.
    # (NumPy's own errstate: it governs NumPy's warnings only, CuPy does not raise them.)
    with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in bar:
            perm = xp.asarray(rng.permutation(n))
            loss_sum, correct, finite = 0.0, 0, True
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                m = idx.shape[0]
                # mode="clip": with the default "raise", NumPy buffers ``out`` (a hidden copy
                # per batch); the indices come from a permutation, so none is out of range.
                xb = X.take(idx, axis=0, out=X_batch[:m], mode="clip")
                tb = Y.take(idx, axis=0, out=Y_batch[:m], mode="clip")
                batch_loss = net.loss(xb, tb, train=True)
                if initial_loss is None:
                    initial_loss = batch_loss
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
                logs.update({f"val_{k}": v for k, v in evaluate(net, *validation_data).items()})
            for key in history.history:
                history.history[key].append(logs.get(key, math.nan))
            history.epochs_run = epoch + 1
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)

            limit = divergence_factor * initial_loss
            if not finite or (initial_loss > 0 and logs["loss"] > limit):
                history.diverged, history.diverged_epoch = True, epoch
                break
            if early_stopping is not None and early_stopping.update(epoch, logs, net):
                history.stopped_early = True
                break
    bar.close()

    if early_stopping is not None:
        early_stopping.restore(net)
        history.best_epoch = early_stopping.best_epoch
    else:
        history.best_epoch = _best_epoch(history)
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
