"""Every dataset scratchlab knows, one object each: config schema, files, fetch, load, shape.

Readers that need pandas/openpyxl/scikit-learn import them inside ``fetch``/``load``, so
naming or validating a dataset costs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchlab.core.errors import DataError
from scratchlab.core.files import write_npz_atomic
from scratchlab.core.rules import Maybe, Text, TextMap, Texts, nested, ruled, to_plain
from scratchlab.data.base import (
    DIGIT_CLASSES,
    Dataset,
    RawDataset,
    basename,
    check_labels,
    check_local,
    image_dataset,
    is_url,
)
from scratchlab.data.download import Checksums, fetch_file, file_digest
from scratchlab.data.idx import read_idx_pair
from scratchlab.spec.data import FRACTION, TASKS, DataConfig

logger = logging.getLogger(__name__)

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


class Digits(Dataset):
    """scikit-learn's bundled 8x8 digits (1797 images): needs no network."""

    name, shape, image_shape = "digits", (64, 10), (8, 8)
    FILE = "digits.npz"

    def source(self, cfg: DataConfig) -> dict[str, Any]:
        return {"loader": "sklearn.datasets.load_digits"}

    def files(self, cfg: DataConfig) -> list[str]:
        return [self.FILE]

    def fetch(self, cfg: DataConfig, raw_dir: Path, progress: bool) -> None:
        from sklearn.datasets import load_digits  # ~1.3 s to import: only when not yet cached

        digits = load_digits()
        images = digits.images
        if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 16:
            raise DataError("sklearn load_digits(): expected integer pixel values 0..16")
        write_npz_atomic(raw_dir / self.FILE, images=images.astype(np.uint8),
                               target=digits.target.astype(np.int64))

    def load(self, cfg: DataConfig, raw_dir: Path) -> RawDataset:
        path = raw_dir / self.FILE
        try:
            with np.load(path, allow_pickle=False) as npz:
                images, target = npz["images"], npz["target"]
        except (OSError, ValueError, KeyError) as exc:
            reason = " ".join(str(exc).split())
            raise DataError(
                f"{path}: not a readable digits archive ({reason}; re-run fetch)"
            ) from None
        if images.ndim != 3 or images.shape[1:] != (8, 8) or target.shape != images.shape[:1]:
            raise DataError(f"{path}: images {images.shape} / target {target.shape} "
                            "(expected (n, 8, 8) and (n,); re-run fetch)")
        check_labels(path, target, 10)
        return image_dataset("digits", images.reshape(len(images), 64), target, (0.0, 16.0),
                             DIGIT_CLASSES, image_shape=self.image_shape)


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    """One official file: its name, the official .gz md5, and the sha256 of its content."""

    name: str = ruled(Text())
    md5: str | None = ruled(Maybe(Text()), default=None)
    content_sha256: str | None = ruled(Maybe(Text()), default=None)


@dataclass(frozen=True, kw_only=True)
class OfficialFiles:
    train_images: FileEntry = nested(FileEntry)
    train_labels: FileEntry = nested(FileEntry)
    test_images: FileEntry = nested(FileEntry)
    test_labels: FileEntry = nested(FileEntry)


@dataclass(frozen=True, kw_only=True)
class OfficialConfig(DataConfig):
    # a local directory or base URL holding the four files; env SCRATCHLAB_DATA_MIRROR too
    mirror: str | None = ruled(Maybe(Text()), default=None)
    base_urls: tuple[str, ...] = ruled(Texts(), default=())
    files: OfficialFiles = nested(OfficialFiles)
    test_fraction: float | None = ruled(Maybe(FRACTION), default=None)  # official split


class OfficialIdx(Dataset):
    """The four official IDX .gz files of an MNIST-format dataset (60k train / 10k test, 28x28).

    A file is accepted when its .gz matches the official md5 or its decompressed content the
    pinned sha256, so a recompressed mirror works too.
    """

    config, shape, official_test_split = OfficialConfig, (784, 10), True
    image_shape = (28, 28)
    class_names: list[str] = DIGIT_CLASSES
    local_copies: tuple[str, ...] = ()  # directories a system package installs the files to

    def source(self, cfg: OfficialConfig) -> dict[str, Any]:
        return {"base_urls": list(cfg.base_urls), "mirror": cfg.mirror,
                "files": to_plain(cfg.files)}

    def files(self, cfg: OfficialConfig) -> list[str]:
        return [getattr(cfg.files, role).name for role in ROLES]

    def fetch(self, cfg: OfficialConfig, raw_dir: Path, progress: bool) -> None:
        for role in ROLES:
            entry: FileEntry = getattr(cfg.files, role)
            local = [str(Path(d) / entry.name) for d in self.local_copies
                     if (Path(d) / entry.name).is_file()]
            urls = [f"{base.rstrip('/')}/{entry.name}" for base in cfg.base_urls]
            fetch_file(entry.name, local + urls, raw_dir, mirror=cfg.mirror, progress=progress,
                       checksums=Checksums(md5=entry.md5, content_sha256=entry.content_sha256))

    def load(self, cfg: OfficialConfig, raw_dir: Path) -> RawDataset:
        paths = {role: raw_dir / getattr(cfg.files, role).name for role in ROLES}
        X, y = read_idx_pair(paths["train_images"], paths["train_labels"])
        X_test, y_test = read_idx_pair(paths["test_images"], paths["test_labels"])
        if X.shape[1:] != X_test.shape[1:]:
            raise DataError(f"{paths['test_images']}: images are {X_test.shape[1:]} but "
                            f"{paths['train_images']} holds {X.shape[1:]} images")
        for role, labels in (("train_labels", y), ("test_labels", y_test)):
            check_labels(paths[role], labels, len(self.class_names))
        return image_dataset(self.name, X, y, (0.0, 255.0), self.class_names, X_test=X_test,
                             y_test=y_test)


class Mnist(OfficialIdx):
    name = "mnist"


class FashionMnist(OfficialIdx):
    """Zalando's Fashion-MNIST; Debian's ``dataset-fashion-mnist`` package is used when present."""

    name, class_names = "fashion_mnist", FASHION_CLASSES
    local_copies = ("/usr/share/datasets/fashion-mnist",)


@dataclass(frozen=True, kw_only=True)
class IdxPairConfig(DataConfig):
    images: str = ruled(Text())
    labels: str = ruled(Text())
    md5: dict[str, str] = ruled(TextMap(), default_factory=dict)  # keyed by file name
    sha256: dict[str, str] = ruled(TextMap(), default_factory=dict)


class IdxPair(Dataset):
    """Any IDX image/label pair (KMNIST, the MNIST t10k files...): local paths or URLs."""

    name, config = "idx", IdxPairConfig

    def check(self, cfg: IdxPairConfig) -> None:
        super().check(cfg)
        if basename(cfg.images) == basename(cfg.labels):
            raise ValueError(f"data.images and data.labels share the file name "
                             f"{basename(cfg.images)}")

    def source(self, cfg: IdxPairConfig) -> dict[str, Any]:
        return {"images": cfg.images, "labels": cfg.labels, "md5": cfg.md5, "sha256": cfg.sha256}

    def files(self, cfg: IdxPairConfig) -> list[str]:
        return [basename(cfg.images), basename(cfg.labels)]

    def fetch(self, cfg: IdxPairConfig, raw_dir: Path, progress: bool) -> None:
        for key in ("images", "labels"):
            source = getattr(cfg, key)
            check_local(key, source)
            name = basename(source)
            # mirror="": explicit files; a mirror holding a same-named file (Fashion-MNIST
            # reuses MNIST's names) must not stand in for them.
            fetch_file(name, [source], raw_dir, mirror="", progress=progress,
                       checksums=Checksums(md5=cfg.md5.get(name), sha256=cfg.sha256.get(name)))

    def load(self, cfg: IdxPairConfig, raw_dir: Path) -> RawDataset:
        images, labels = (raw_dir / name for name in self.files(cfg))
        X, y = read_idx_pair(images, labels)
        if y.size == 0 or y.max() < 1:
            raise DataError(f"{labels}: a single class or no labels (expected at least 2 classes)")
        n_classes = int(y.max()) + 1
        check_labels(labels, y, n_classes)
        return image_dataset("idx", X, y, (0.0, 255.0), [str(k) for k in range(n_classes)])


@dataclass(frozen=True, kw_only=True)
class Ex3d1Config(DataConfig):
    url: str = ruled(Text())
    sha256: str | None = ruled(Maybe(Text()), default=None)  # not published upstream
    mirror: str | None = ruled(Maybe(Text()), default=None)


class Ex3d1(Dataset):
    """Andrew Ng's ex3 digits: 5000 20x20 images, sheets X (5000x400) and y (10 = digit 0)."""

    name, config, shape, image_shape = "ex3d1", Ex3d1Config, (400, 10), (20, 20)

    def source(self, cfg: Ex3d1Config) -> dict[str, Any]:
        return {"url": cfg.url, "sha256": cfg.sha256}

    def files(self, cfg: Ex3d1Config) -> list[str]:
        return [basename(cfg.url)]

    def reusable(self, cfg: Ex3d1Config) -> bool:
        return is_url(cfg.url)  # a local file is cheap to copy again, and may have been edited

    def fetch(self, cfg: Ex3d1Config, raw_dir: Path, progress: bool) -> None:
        check_local("url", cfg.url)
        path = fetch_file(basename(cfg.url), [cfg.url], raw_dir, mirror=cfg.mirror,
                          checksums=Checksums(sha256=cfg.sha256), progress=progress)
        if not cfg.sha256:
            logger.info("%s: sha256 %s (set data.sha256 to pin it)", path.name, file_digest(path))

    def load(self, cfg: Ex3d1Config, raw_dir: Path) -> RawDataset:
        from scratchlab.data.ex3d1 import read_ex3d1  # pandas + openpyxl: only for this dataset

        X, y = read_ex3d1(raw_dir / basename(cfg.url))
        # Octave's 1-based labels: 10 stands for the digit 0.
        return image_dataset("ex3d1", X, np.where(y == 10, 0, y), None, DIGIT_CLASSES,
                             image_shape=self.image_shape, order="F")


@dataclass(frozen=True, kw_only=True)
class TableConfig(DataConfig):
    path: str = ruled(Text())
    target: str = ruled(Text())
    sheet: str | None = ruled(Maybe(Text()), default=None)


class Table(Dataset):
    """The user's own CSV/XLSX with one target column: classification or regression."""

    name, config, tasks = "csv", TableConfig, TASKS

    def source(self, cfg: TableConfig) -> dict[str, Any]:
        return {"path": cfg.path}

    def files(self, cfg: TableConfig) -> list[str]:
        return [basename(cfg.path)]

    def reusable(self, cfg: TableConfig) -> bool:
        return False  # the user edits this file in place: always copy it afresh

    def fetch(self, cfg: TableConfig, raw_dir: Path, progress: bool) -> None:
        check_local("path", cfg.path)
        fetch_file(basename(cfg.path), [cfg.path], raw_dir, mirror="", progress=progress)

    def load(self, cfg: TableConfig, raw_dir: Path) -> RawDataset:
        from scratchlab.data.tabular import read_table  # pandas: only for this dataset

        table = read_table(raw_dir / basename(cfg.path), cfg.target, cfg.task, cfg.sheet,
                           shown=cfg.path)  # the user's file, not our copy of it
        return RawDataset(name="csv", task=cfg.task, X=table.X, y=table.y, X_test=None,
                          y_test=None, class_names=table.class_names, image_shape=None,
                          pixel_range=None, feature_names=table.feature_names)


DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (Digits(), Mnist(), FashionMnist(), Ex3d1(), IdxPair(), Table())
}
