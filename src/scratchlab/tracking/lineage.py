"""A run's data as an MLflow dataset input: what the UI's Datasets column shows.

The dataset is the raw data the run trained on, named after its ``data.name`` and identified by
the digest of its manifest (the ``dataset_sha256`` tag; MLflow keeps at most 36 characters of a
digest, so its first 32 hex digits); its source is where the fetch step got the files (a URL, a
local path, or the loader that made them), its schema and profile those of the training split
the network saw (float32 tensors of shape (-1, inputs) and (-1, outputs)). Two runs on the same
files show the same dataset; a changed file is a new one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

DIGEST_CHARS = 32
CONTEXT = "training"
_LOCATIONS = ("url", "base_urls", "images", "path")  # the manifest keys naming where files were


def _source(source: Mapping[str, Any]) -> Any:
    """A URL or a path (MLflow makes it an ``http`` or ``local`` source), else a ``code``
    source holding the manifest's description (``{"loader": "sklearn.datasets.load_digits"}``)."""
    for key in _LOCATIONS:
        value = source.get(key)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    return CodeDatasetSource({key: str(value) for key, value in source.items()})


def dataset_input(name: str, sha256: str, source: Mapping[str, Any], features: np.ndarray,
                  targets: np.ndarray) -> DatasetInput:
    """The dataset input of a run trained on ``features``/``targets`` from those files."""
    with warnings.catch_warnings():  # a path matches MLflow's local source twice; it picks one
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted",
                                UserWarning)
        dataset = mlflow.data.from_numpy(features, targets=targets, source=_source(source),
                                         name=name, digest=sha256[:DIGEST_CHARS])
    return DatasetInput(dataset._to_mlflow_entity(),
                        tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXT)])
