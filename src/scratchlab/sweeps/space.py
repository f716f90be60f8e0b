"""An Optuna search space declared in YAML (``conf/sweep/optuna.yaml``), turned into overrides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from scratchlab.config import conf_dir
from scratchlab.core.errors import ConfigError
from scratchlab.sweeps.keys import check_keys

KINDS = ("float", "int", "categorical")


def default_space_path() -> Path:
    return conf_dir() / "sweep" / "optuna.yaml"


def load_space(path: Path) -> dict[str, dict[str, Any]]:
    """``{key: spec}``, checked so that a typo fails before the first trial."""
    if not path.is_file():
        raise ConfigError(f"{path}: search space file not found")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    params = raw.get("params") if isinstance(raw, Mapping) else None
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"{path}: expected a non-empty 'params' mapping")
    check_keys(params, f"{path}: params.")
    for key, spec in params.items():
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind not in KINDS:
            raise ConfigError(f"{path}: params.{key}.type={kind!r}; expected one of "
                              f"{', '.join(KINDS)}")
        needed = ("choices",) if kind == "categorical" else ("low", "high")
        missing = [n for n in needed if n not in spec]
        if missing:
            raise ConfigError(f"{path}: params.{key} needs {', '.join(missing)}")
    return dict(params)


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Ask the trial for a value per key; return them as Hydra overrides."""
    overrides = []
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "float":
            value = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "int":
            value = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1),
                                      log=spec.get("log", False))
        else:
            value = trial.suggest_categorical(key, list(spec["choices"]))
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        overrides.append(f"{key}={spec.get('template', '{}').format(text)}")
    return overrides
