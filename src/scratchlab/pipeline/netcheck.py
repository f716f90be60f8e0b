"""Gradient check of the configured network: backprop against central differences (float64).

The config is composed and validated like the Hydra app's, and the network is built by the
trainer's own code, in float64 (finite differences in float32 are too noisy to catch bugs).
Which batch it runs on follows one rule, so it never downloads anything:

- ``data=digits`` (bundled with scikit-learn): ``samples`` real training samples;
- any other dataset: random inputs and targets shaped like the dataset (mnist 784 -> 10,
  ex3d1 400 -> 10, images of 28x28 and 20x20 for a conv net); for ``idx`` and ``csv``, whose
  shape lives in your files, pass ``input_dim`` and ``output_dim`` (then their file keys need
  no value; a conv net is checked on a dataset with fixed images).

A parameter with more than ``entries`` entries (a conv net's first Dense layer has 432,000) is
checked on that many of them, drawn at random with the seed: each entry costs two passes of
the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from scratchlab.config import compose, validate
from scratchlab.core.errors import ConfigError
from scratchlab.core.rules import Choice, Number, build
from scratchlab.data.catalog import DATASETS
from scratchlab.data.registry import data_config
from scratchlab.nn.gradcheck import GradientCheck, check_gradients
from scratchlab.nn.network import Network, build_network
from scratchlab.pipeline.memory import check_fits
from scratchlab.spec.data import DataConfig
from scratchlab.spec.network import NetworkSpec

ENTRIES = 1000  # checked per parameter by default


@dataclass
class NetCheck:
    net: Network
    result: GradientCheck


def _shape(data: str, input_dim: int | None, output_dim: int | None) -> tuple[int, int] | None:
    """The dataset's fixed shape, the flags' shape, or None: read it from the real data."""
    fixed = DATASETS[data].shape
    if fixed is not None:
        if input_dim is not None or output_dim is not None:
            raise ConfigError(f"--input-dim/--output-dim: data={data} has a fixed shape "
                              f"{fixed[0]} -> {fixed[1]}; they are for idx and csv")
        return fixed
    if input_dim is None or output_dim is None:
        raise ConfigError(
            f"data={data}: its shape lives in your files; pass --input-dim and --output-dim"
        )
    for flag, value in (("--input-dim", input_dim), ("--output-dim", output_dim)):
        try:
            Number(1, integer=True).check(flag, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    return input_dim, output_dim


def _batch(config, spec: NetworkSpec, samples: int, rng: np.random.Generator):
    """Real digits samples, or random inputs with targets fitting the loss (see module doc)."""
    if config.data.name == "digits":
        from scratchlab.pipeline.prepare import prepare_data

        splits, _ = prepare_data(config)
        return splits.train.X[:samples], splits.train.Y[:samples]
    X = rng.standard_normal((samples, spec.input_dim))
    if spec.classification:
        return X, np.eye(spec.output_dim)[rng.integers(0, spec.output_dim, samples)]
    return X, rng.standard_normal((samples, spec.output_dim))


def _data_without_files(values) -> DataConfig:
    """The data group as far as gradcheck needs it: digits is read for real (fully checked);
    for the others only name and task matter, since their files are never read."""
    if values.get("name") == "digits":
        return data_config(values)
    Choice(tuple(DATASETS)).check("data.name", values.get("name"))
    return build(DataConfig, {k: values[k] for k in ("name", "task") if k in values}, "data.")


def gradcheck(overrides: Sequence[str], *, samples: int = 8, input_dim: int | None = None,
              output_dim: int | None = None, entries: int | None = ENTRIES) -> NetCheck:
    """Build the configured network in float64 and check every parameter's gradient (on at
    most ``entries`` entries of each; None: all)."""
    cfg = compose(overrides)
    config = validate(cfg, data=_data_without_files)
    if samples < 1:
        raise ConfigError(f"--samples={samples}: must be at least 1")
    if entries is not None and entries < 1:
        raise ConfigError(f"--entries={entries}: must be at least 1 (0 on the command line: all)")
    dims = _shape(config.data.name, input_dim, output_dim)
    image_shape = DATASETS[config.data.name].image_shape
    if config.model.blocks and image_shape is None:
        raise ConfigError(f"data={config.data.name}: a conv net needs the image shape, which "
                          "lives in your files; check it on a dataset with fixed images "
                          "(digits, mnist, fashion_mnist, ex3d1)")
    spec = config.network_spec(*dims, dtype="float64", image_shape=image_shape)
    check_fits(spec, samples, "sgd", batch_key="--samples")
    rng = np.random.default_rng(config.train.seed)
    net = build_network(spec, rng)
    X, T = _batch(config, spec, samples, rng)
    # Thousands of tiny products: BLAS threads only add overhead, and spin badly under load
    # (784-100-10: 19 s on one thread, 20 s to 150 s on two depending on other jobs).
    with threadpool_limits(limits=1, user_api="blas"):
        return NetCheck(net, check_gradients(net, X, T, max_entries=entries,
                                             seed=config.train.seed))


def table(check: NetCheck, tolerance: float) -> str:
    """One row per parameter, failures flagged, entries left out at a kink counted."""
    errors, skipped = check.result.errors, check.result.skipped
    width = max(len("parameter"), *(len(key) for key in errors))
    lines = [f"{'parameter':<{width}}  {'shape':<12}  relative error"]
    for key, error in errors.items():
        flag = "" if error < tolerance else "  FAIL"
        param = check.net.params[key]
        shape = "x".join(str(n) for n in param.shape)
        notes = []
        if check.result.checked[key] < param.size:
            notes.append(f"{check.result.checked[key]} of {param.size} entries")
        if skipped.get(key):
            notes.append(f"{skipped[key]} at a kink left out")
        note = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(f"{key:<{width}}  {shape:<12}  {error:.2e}{flag}{note}")
    return "\n".join(lines)
