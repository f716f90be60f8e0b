"""The Hydra app's data path: fetch (cached under ``data/cache``) and preprocess in memory.

DVC stages keep raw and processed data as stage outputs instead; both end in the same
``Splits`` for the same config. Within one process (a Hydra sweep on the basic launcher, an
Optuna study) each data config is prepared once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from scratchlab.config.schema import Config
from scratchlab.core.paths import project_root
from scratchlab.data.preprocess import preprocess
from scratchlab.data.registry import data_config, fetch_dataset, load_dataset
from scratchlab.spec.splits import Splits

_prepared: dict[str, tuple[Splits, dict[str, Any]]] = {}


def data_fingerprint(config: Config) -> str:
    """A short hash of everything that decides the splits: the data config and val_fraction."""
    blob = json.dumps([config.plain["data"], config.train.val_fraction], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def prepare_data(config: Config, raw_dir: Path | None = None) -> tuple[Splits, dict[str, Any]]:
    """The config's splits and the raw files' manifest (fetched at most once per data config)."""
    key = data_fingerprint(config)
    if raw_dir is None and key in _prepared:
        return _prepared[key]
    data = data_config(config.plain["data"])
    raw_dir = raw_dir or project_root() / "data" / "cache" / f"{data.name}-{key}"
    manifest = fetch_dataset(data, raw_dir, progress=config.train.progress)
    splits = preprocess(load_dataset(data, raw_dir), test_fraction=data.test_fraction,
                        split_seed=data.split_seed, val_fraction=config.train.val_fraction)
    _prepared[key] = splits, manifest
    return splits, manifest
