"""Which config keys a sweep varies, and the run name a job gets from its values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser


def override_key(override: str) -> str:
    """``+optimizer.lr=0.1`` -> ``optimizer.lr`` (also for ``++``/``~`` prefixes)."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(
    task_overrides: Iterable[str], sweeper_params: Mapping[str, Any] | None
) -> list[str]:
    """Keys with several values: command-line sweeps plus ``hydra.sweeper.params``."""
    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
    keys += [str(k) for k in (sweeper_params or {}) if str(k) not in keys]
    return keys


def job_run_name(task_overrides: Iterable[str], keys: Iterable[str]) -> str:
    """The job's own values of the swept keys, e.g. ``optimizer.lr=0.1``."""
    wanted = set(keys)
    chosen = [o for o in task_overrides if override_key(o) in wanted]
    return " ".join(chosen) or "defaults"
