"""What every dataset is: a ``data.*`` config schema, raw files to fetch, and a loader.

A :class:`Dataset` object says everything about one dataset (its config keys and their rules,
which files it needs, how to fetch and verify them, how to read them, its shape and class
names); ``scratchlab.data.catalog`` holds one per dataset and ``scratchlab.data.registry`` runs
them (manifest, verification, caching).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import numpy as np

from scratchlab.core.errors import DataError
from scratchlab.spec.data import DataConfig

DIGIT_CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class RawDataset:
    """One dataset as stored: raw values (not yet scaled or flattened) and their meaning."""

    name: str
    task: str  # "classification" or "regression"
    X: np.ndarray  # (n, ...) raw values
    y: np.ndarray  # int64 labels 0..k-1, or float64 targets
    X_test: np.ndarray | None  # only for an official test split (MNIST)
    y_test: np.ndarray | None
    class_names: list[str]  # empty for regression
    image_shape: tuple[int, int] | None  # None for tables
    pixel_range: tuple[float, float] | None  # known value range; None: use the data's min/max
    feature_names: list[str]


class Dataset:
    """One dataset: override ``source``, ``files``, ``fetch`` and ``load``; ``check`` adds
    rules across config keys."""

    name: ClassVar[str]
    config: ClassVar[type[DataConfig]] = DataConfig
    # (input_dim, output_dim) when it does not depend on the user's files (gradcheck uses it)
    shape: ClassVar[tuple[int, int] | None] = None
    # (height, width) of its images when fixed, as ``Splits.image_shape`` will say (gradcheck)
    image_shape: ClassVar[tuple[int, int] | None] = None
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    # True when no test_fraction is needed because the files hold an official test split
    official_test_split: ClassVar[bool] = False

    def check(self, cfg: Any) -> None:
        """Rules across keys, beyond each key's own (raise ValueError naming the key)."""
        if cfg.task not in self.tasks:
            raise ValueError(
                f"data.task={cfg.task!r}: dataset {self.name!r} only supports "
                f"{' and '.join(self.tasks)}"
            )
        if cfg.test_fraction is None and not self.official_test_split:
            raise ValueError(
                f"data.test_fraction=None: dataset {self.name!r} has no official test split; "
                "set a fraction in (0, 1)"
            )

    def source(self, cfg: Any) -> dict[str, Any]:
        """Where the files come from (recorded in the manifest; a changed source re-fetches)."""
        raise NotImplementedError

    def reusable(self, cfg: Any) -> bool:
        """Whether files fetched earlier from the same source may be reused once verified."""
        return True

    def files(self, cfg: Any) -> list[str]:
        """The names of the raw files ``fetch`` puts in the raw directory."""
        raise NotImplementedError

    def fetch(self, cfg: Any, raw_dir: Path, progress: bool) -> dict[str, Any]:
        """Put ``files(cfg)`` into ``raw_dir``, verified; return where they came from."""
        raise NotImplementedError

    def load(self, cfg: Any, raw_dir: Path) -> RawDataset:
        """Read the fetched files (already checked against the manifest)."""
        raise NotImplementedError


def is_url(source: str) -> bool:
    """True for http(s) URLs, which are downloaded; anything else (or file://) is a local path."""
    return urlparse(str(source)).scheme in ("http", "https")


def local_path(source: str) -> Path:
    """The filesystem path of a local source: a plain path (``~`` expanded) or a file:// URL."""
    parsed = urlparse(source)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(source).expanduser()


def basename(source: str) -> str:
    """File name of a path or URL, which is also its name inside the raw directory."""
    return Path(unquote(urlparse(source).path)).name if is_url(source) else local_path(source).name


def check_local(key: str, source: str) -> None:
    """Fail early, naming the config key, when a local source path does not exist."""
    if not is_url(source) and not local_path(source).is_file():
        raise DataError(
            f"data.{key}: {source} not found "
            f"(relative paths are relative to the working directory {os.getcwd()})"
        )


def check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"{path}: labels span {labels.min()}..{labels.max()} (expected 0..{n_classes - 1})"
        )


def image_dataset(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    pixel_range: tuple[float, float] | None,
    class_names: list[str],
    *,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    image_shape: tuple[int, int] | None = None,
    order: str = "C",
) -> RawDataset:
    """A classification dataset of images (``X`` (n, rows, cols), or flat with ``image_shape``)."""
    shape = image_shape or (int(X.shape[1]), int(X.shape[2]))
    rows, cols = np.indices(shape)
    pixels = zip(rows.ravel(order=order), cols.ravel(order=order), strict=True)
    return RawDataset(
        name=name,
        task="classification",
        X=X,
        y=y.astype(np.int64),
        X_test=X_test,
        y_test=None if y_test is None else y_test.astype(np.int64),
        class_names=class_names,
        image_shape=shape,
        pixel_range=pixel_range,
        feature_names=[f"pixel_{r}_{c}" for r, c in pixels],
    )
