"""Will the configured network fit in memory? Answered from the spec, before any allocation.

``model.hidden=[1000000000000]`` would otherwise end in NumPy's ``MemoryError`` traceback (or,
worse, in the kernel's OOM killer half-way through an epoch). The estimate counts what
training keeps alive at once: the parameters and their gradients (two flat vectors, plus the
initial arrays they are packed from), the optimizer's state (one vector per slot), a copy for
early stopping's best weights, and the per-row activations of one batch (forward caches and
backward gradients, at least ``EVAL_ROWS`` rows: evaluation and ``predict`` use batches of
1024). A conv net's largest buffers are its im2col columns, k*k values per input pixel and
kernel offset, kept from forward to backward, and their gradient. It is an estimate, not an
accounting: a config over the available memory is refused with its size; one under it may
still be tight.
"""

from __future__ import annotations

from pathlib import Path

from scratchlab.core.errors import ConfigError
from scratchlab.spec.network import ConvBlock, NetworkSpec, feature_shapes

EVAL_ROWS = 1024  # Network.predict's and evaluate's batch size
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1,
                   "adam": 2}
MEMINFO = Path("/proc/meminfo")


def parameter_count(spec: NetworkSpec) -> int:
    """Weights, biases and BatchNorm parameters/statistics of the spec's network."""
    widths = [spec.flat_dim, *spec.hidden, spec.output_dim]
    count = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
    if spec.batchnorm:
        count += 3 * sum(spec.hidden)  # gamma (beta replaces the bias), running mean and var
    channels = spec.image_shape[0] if spec.blocks else 0
    for block in spec.blocks:
        if isinstance(block, ConvBlock):
            count += block.filters * (channels * block.kernel**2 + (3 if spec.batchnorm else 1))
            channels = block.filters
    return count


def conv_activation_count(spec: NetworkSpec) -> int:
    """Values a conv net's blocks keep per image in one forward/backward pass: per conv, its
    im2col columns and their gradient (C k*k values per output pixel each), the padded input
    gradient, the output, activation and their gradients (BatchNorm's four more); per pool,
    its output, window index and gradient, and its input gradient."""
    if not spec.blocks:
        return 0
    total, (c, h, w) = 0, spec.image_shape
    for block, (oc, oh, ow) in zip(spec.blocks, feature_shapes(spec.blocks, spec.image_shape),
                                   strict=True):
        if isinstance(block, ConvBlock):
            pad = 2 * block.padding
            total += 2 * c * block.kernel**2 * oh * ow + c * (h + pad) * (w + pad)
            total += (4 + (4 if spec.batchnorm else 0)) * oc * oh * ow
        else:
            total += 3 * oc * oh * ow + c * h * w
        c, h, w = oc, oh, ow
    return total


def activation_count(spec: NetworkSpec, rows: int) -> int:
    """Values one forward/backward pass over ``rows`` rows keeps per layer."""
    per_unit = 4 + (4 if spec.batchnorm else 0) + (2 if spec.dropout > 0 else 0)
    per_row = (spec.input_dim + conv_activation_count(spec) + per_unit * sum(spec.hidden)
               + 4 * spec.output_dim)
    return max(rows, EVAL_ROWS) * per_row


def training_bytes(spec: NetworkSpec, batch_rows: int, optimizer: str = "adam",
                   keeps_best: bool = False) -> tuple[int, int]:
    """(parameter-side bytes, activation bytes) of training ``spec`` on ``batch_rows`` rows."""
    itemsize = 4 if spec.dtype == "float32" else 8
    copies = 3 + OPTIMIZER_SLOTS.get(optimizer, 2) + (1 if keeps_best else 0)
    return (copies * parameter_count(spec) * itemsize,
            activation_count(spec, batch_rows) * itemsize)


def available_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (Linux), else None (then nothing is checked)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


def check_fits(spec: NetworkSpec, batch_rows: int, optimizer: str = "adam",
               keeps_best: bool = False, available: int | None = None,
               batch_key: str = "train.batch_size") -> None:
    """ConfigError naming the key and the size when training ``spec`` cannot fit in memory."""
    params, activations = training_bytes(spec, batch_rows, optimizer, keeps_best)
    available = available_bytes() if available is None else available
    if available is None or params + activations <= available:
        return
    if sum(training_bytes(spec, 1, optimizer, keeps_best)) > available:  # even a small batch
        culprit = f"model.hidden={list(spec.hidden)}"
        layers = "-".join(map(str, (spec.input_dim, *spec.hidden, spec.output_dim)))
        if spec.blocks:
            culprit, layers = "model.blocks", f"conv {layers}"
        what = (f"a {layers} network ({parameter_count(spec):,} parameters) needs about "
                f"{human(params + activations)} with its gradients, {optimizer} state and "
                "activations")
    else:
        culprit = f"{batch_key}={batch_rows}"
        what = f"the activations of a batch need about {human(activations)}"
    raise ConfigError(f"{culprit}: {what}, more than the {human(available)} of memory "
                      "available; make the network or the batch smaller")
