"""An Optuna search space declared in YAML (``conf/sweep/optuna.yaml``), turned into overrides;
the same file names the study's pruner (``sweeps.pruning``)."""

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
TOP_KEYS = ("params", "pruner", "pruners")


def default_space_path() -> Path:
    return conf_dir() / "sweep" / "optuna.yaml"


def read_study_file(path: Path) -> dict[str, Any]:
    """The search-space file: ``params`` (the space), ``pruner`` and ``pruners``
    (``sweeps.pruning``); any other top-level key is a mistake, said before the first trial."""
    if not path.is_file():
        raise ConfigError(f"{path}: search space file not found")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # YAML syntax, an unresolvable ${...}
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a valid search space file ({first})") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with 'params'")
    unknown = [key for key in raw if key not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key; allowed: {', '.join(TOP_KEYS)}")
    return dict(raw)


def load_space(path: Path, raw: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{key: spec}`` from the file at ``path`` (or its contents ``raw``), checked so that a
    typo fails before the first trial."""
    params = (read_study_file(path) if raw is None else raw).get("params")
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
