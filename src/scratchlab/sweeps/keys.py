"""A swept key must be a config key: checked once, before a sweep starts a single job.

Without this, ``-m +optimizer.lrr=0.1,0.2`` (Hydra's own hint after a typo) or a typo in
``conf/sweep/optuna.yaml`` starts a parent run whose every job fails on the same unknown key.
Which keys exist is read from the typed schema (``scratchlab.config.schema``) and the datasets'
own schemas, so nothing is listed twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, is_dataclass

from scratchlab.config.schema import GROUPS, ModelConfig, TrackingConfig, TrainConfig
from scratchlab.core.errors import ConfigError
from scratchlab.data.catalog import DATASETS
from scratchlab.spec.optim import HYPERPARAMETERS, SCHEDULE_PARAMETERS

# group options (optimizer=adam, optimizer/schedule=cosine, +sweep=lr: a sweep preset of
# conf/sweep), not keys inside them
CHOICES = (*GROUPS, "experiment", "optimizer/schedule", "sweep")


def _keys(schema: type, prefix: str) -> set[str]:
    out: set[str] = set()
    for f in fields(schema):
        nested = f.metadata.get("schema")
        if nested is not None and is_dataclass(nested):
            out |= _keys(nested, f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def known_keys() -> set[str]:
    """Every dotted key some config can have (any optimizer's, any dataset's)."""
    keys = _keys(ModelConfig, "model.") | _keys(TrainConfig, "train.")
    keys |= _keys(TrackingConfig, "tracking.")
    keys |= {"optimizer.name", *(f"optimizer.{k}" for k in HYPERPARAMETERS)}
    keys |= {"optimizer.schedule.name", *(f"optimizer.schedule.{k}" for k in SCHEDULE_PARAMETERS)}
    for dataset in DATASETS.values():
        keys |= _keys(dataset.config, "data.")
    return keys


def check_keys(keys: Iterable[str], where: str = "") -> None:
    """ConfigError naming the first key no config has, and the keys of its group."""
    known = known_keys()
    for key in keys:
        hydra = key.partition(".")[0].partition("/")[0] == "hydra"  # Hydra's own: hydra/launcher
        if key in CHOICES or hydra or key in known or any(
                k.startswith(f"{key}.") for k in known):  # a whole nested group is a key too
            continue
        group = key.split(".", 1)[0]
        allowed = sorted(k.removeprefix(f"{group}.") for k in known if k.startswith(f"{group}."))
        hint = f"allowed: {', '.join(allowed)}" if allowed else f"groups: {', '.join(CHOICES)}"
        raise ConfigError(f"{where}{key}: unknown key; {hint}")
