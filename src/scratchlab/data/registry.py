"""Fetch and load any dataset by its ``data`` config: manifest, verification and reuse.

``fetch_dataset`` makes a raw directory hold one dataset's files plus ``manifest.json``
(reusing files an earlier fetch of the same source left there, once they verify, so a cached
dataset costs a hash, not a download or a scikit-learn import); ``load_dataset`` checks the
files against the manifest and returns a ``RawDataset``. Both take the ``data`` config group
(a mapping, or an already built :class:`DataConfig`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scratchlab.core.errors import ConfigError, DataError
from scratchlab.core.rules import Choice, build
from scratchlab.data.base import Dataset, RawDataset
from scratchlab.data.catalog import DATASETS
from scratchlab.data.manifest import verify_manifest, write_manifest
from scratchlab.spec.data import DataConfig

logger = logging.getLogger(__name__)


def data_config(cfg: Mapping[str, Any] | DataConfig) -> DataConfig:
    """The ``data`` group built and checked against its dataset's schema (ConfigError)."""
    if isinstance(cfg, DataConfig):
        return cfg
    if isinstance(cfg, DictConfig):  # its ``in`` is False for unset ``???`` values: go plain
        cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    try:
        dataset = DATASETS[Choice(tuple(DATASETS)).check("data.name", cfg.get("name"))]
        built = build(dataset.config, cfg, "data.")
        dataset.check(built)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    return built


def dataset_of(cfg: DataConfig) -> Dataset:
    return DATASETS[cfg.name]


def fetch_dataset(cfg: Mapping[str, Any] | DataConfig, raw_dir: Path,
                  progress: bool = True) -> dict[str, Any]:
    """Put the dataset's raw files into ``raw_dir`` and write ``raw_dir/manifest.json``.

    Returns the manifest: ``name``, ``files`` ({filename: {"sha256", "bytes"}}) and
    ``source`` (where the files came from).
    """
    cfg = data_config(cfg)
    dataset = dataset_of(cfg)
    raw_dir = Path(raw_dir)
    source = json.loads(json.dumps(dataset.source(cfg)))  # as the manifest stores it
    files = dataset.files(cfg)
    if dataset.reusable(cfg):
        cached = _cached(raw_dir, cfg.name, files, source)
        if cached is not None:
            logger.info("%s: %s already fetched and verified", raw_dir, ", ".join(files))
            return cached
    raw_dir.mkdir(parents=True, exist_ok=True)
    dataset.fetch(cfg, raw_dir, progress)
    return write_manifest(raw_dir, cfg.name, files, source)


def _cached(raw_dir: Path, name: str, files: list[str], source: dict) -> dict | None:
    """The manifest of an earlier fetch of the same files from the same source, if they verify."""
    if not (raw_dir / "manifest.json").is_file():
        return None
    try:
        manifest = verify_manifest(raw_dir, name, files)
    except DataError:
        return None
    if manifest.get("source") != source or sorted(manifest["files"]) != sorted(files):
        return None
    return manifest


def load_dataset(cfg: Mapping[str, Any] | DataConfig, raw_dir: Path) -> RawDataset:
    """Load the dataset fetched into ``raw_dir``, after checking its files against the manifest."""
    cfg = data_config(cfg)
    dataset = dataset_of(cfg)
    raw_dir = Path(raw_dir)
    verify_manifest(raw_dir, cfg.name, dataset.files(cfg))
    raw = dataset.load(cfg, raw_dir)
    logger.info(
        "loaded %s: X %s, %d classes%s", cfg.name, raw.X.shape, len(raw.class_names),
        "" if raw.X_test is None else f", official test split {raw.X_test.shape}",
    )
    return raw
