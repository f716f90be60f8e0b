"""``scratchlab gradcheck``: backprop against central differences on the configured network.

The config is composed and validated exactly like the Hydra app's; the network is the
configured one built in float64 (finite differences in float32 are too noisy to catch bugs).
Which batch it runs on follows one rule, so the command never downloads anything:

- ``data=digits`` (bundled with scikit-learn): ``--samples`` real training samples;
- any other dataset: random inputs and targets shaped like the dataset (mnist 784 -> 10,
  ex3d1 400 -> 10); for ``idx`` and ``csv``, whose shape lives in your files, pass
  ``--input-dim`` and ``--output-dim``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from scratchlab.config import compose, validate
from scratchlab.data.datasets import fetch_dataset, load_dataset
from scratchlab.errors import ConfigError, ScratchlabError
from scratchlab.nn.gradcheck import check_gradients
from scratchlab.nn.network import Network, NetworkSpec, build_network
from scratchlab.preprocess import preprocess

# (input_dim, output_dim) of the datasets whose shape does not depend on the user's files
FIXED_SHAPES = {"digits": (64, 10), "mnist": (784, 10), "ex3d1": (400, 10)}


class GradientCheckFailed(ScratchlabError):
    """A parameter's backprop gradient disagrees with the numerical one."""


def _spec(cfg: Mapping[str, Any], input_dim: int, output_dim: int) -> NetworkSpec:
    model = OmegaConf.to_container(cfg["model"]) if isinstance(cfg, DictConfig) else cfg["model"]
    return NetworkSpec.from_dict(
        model, input_dim=input_dim, output_dim=output_dim, dtype="float64"
    )


def _shape(data: str, input_dim: int | None, output_dim: int | None) -> tuple[int, int]:
    if data in FIXED_SHAPES:
        if input_dim is not None or output_dim is not None:
            raise ConfigError(
                f"--input-dim/--output-dim: data={data} has a fixed shape "
                f"{FIXED_SHAPES[data][0]} -> {FIXED_SHAPES[data][1]}; they are for idx and csv"
            )
        return FIXED_SHAPES[data]
    if input_dim is None or output_dim is None:
        raise ConfigError(
            f"data={data}: its shape lives in your files; pass --input-dim and --output-dim"
        )
    return input_dim, output_dim


def _batch(
    cfg: Mapping[str, Any], spec: NetworkSpec, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Real digits samples, or random inputs with targets fitting the loss (see module doc)."""
    if cfg["data"]["name"] == "digits":
        # not experiment.prepare_data: that module imports mlflow (~4 s) and caches in data/
        with tempfile.TemporaryDirectory() as raw_dir:
            fetch_dataset(cfg["data"], Path(raw_dir), progress=False)
            raw = load_dataset(cfg["data"], Path(raw_dir))
        splits = preprocess(raw, cfg["data"], float(cfg["train"]["val_fraction"]))
        return splits.train.X[:samples], splits.train.Y[:samples]
    X = rng.standard_normal((samples, spec.input_dim))
    if spec.classification:
        return X, np.eye(spec.output_dim)[rng.integers(0, spec.output_dim, samples)]
    return X, rng.standard_normal((samples, spec.output_dim))


def gradcheck(
    overrides: Sequence[str],
    *,
    samples: int = 8,
    input_dim: int | None = None,
    output_dim: int | None = None,
) -> tuple[Network, dict[str, float]]:
    """Build the configured network in float64 and return its per-parameter relative errors."""
    cfg = compose(overrides)
    validate(cfg)
    if samples < 1:
        raise ConfigError(f"--samples={samples}: must be at least 1")
    spec = _spec(cfg, *_shape(cfg["data"]["name"], input_dim, output_dim))
    rng = np.random.default_rng(int(cfg["train"]["seed"]))
    net = build_network(spec, rng)
    X, T = _batch(cfg, spec, samples, rng)
    # Thousands of tiny products: BLAS threads only add overhead, and spin badly under load
    # (784-100-10: 19 s on one thread, 20 s to 150 s on two depending on other jobs).
    with threadpool_limits(limits=1, user_api="blas"):
        return net, check_gradients(net, X, T)


def report(net: Network, errors: Mapping[str, float], tolerance: float) -> str:
    """The table the command prints: one row per parameter, failures flagged."""
    width = max(len("parameter"), *(len(key) for key in errors))
    lines = [f"{'parameter':<{width}}  {'shape':<12}  relative error"]
    for key, error in errors.items():
        flag = "" if error < tolerance else "  FAIL"
        shape = "x".join(str(n) for n in net.params[key].shape)
        lines.append(f"{key:<{width}}  {shape:<12}  {error:.2e}{flag}")
    return "\n".join(lines)


def run(
    overrides: Sequence[str],
    *,
    tolerance: float,
    samples: int,
    input_dim: int | None = None,
    output_dim: int | None = None,
) -> None:
    """Print the table; raise :class:`GradientCheckFailed` (exit 1) naming the worst parameter."""
    if not tolerance > 0:
        raise ConfigError(f"--tolerance={tolerance}: must be > 0")
    net, errors = gradcheck(overrides, samples=samples, input_dim=input_dim, output_dim=output_dim)
    print(report(net, errors, tolerance), flush=True)
    worst = max(errors, key=errors.__getitem__)
    if errors[worst] >= tolerance:
        raise GradientCheckFailed(
            f"gradient check failed: {worst} relative error {errors[worst]:.2e} >= tolerance "
            f"{tolerance:g}"
        )
    layers = "-".join(map(str, (net.spec.input_dim, *net.spec.hidden, net.spec.output_dim)))
    print(f"OK: {len(errors)} parameters of {layers}, worst {worst} {errors[worst]:.2e} "
          f"< {tolerance:g}")
