"""The dataset registry the pipeline stages call: fetch raw files, then load them verified.

``fetch_dataset`` makes a raw directory hold one dataset's files plus ``manifest.json``;
``load_dataset`` checks those files against the manifest and returns a ``RawDataset`` with
the raw values and what preprocessing needs to know (task, classes, image shape, pixel range).
Both take the ``data`` config group (a DictConfig or any mapping; see conf/data/*.yaml).
"""

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from omegaconf import DictConfig, OmegaConf

from scratchlab.data.download import fetch_file, file_digest, is_url, local_path
from scratchlab.data.idx import read_idx_pair
from scratchlab.data.manifest import read_manifest, verify_manifest, write_manifest
from scratchlab.data.npz import save_npz_deterministic
from scratchlab.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DIGITS_FILE = "digits.npz"
MNIST_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
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


# --- config access ----------------------------------------------------------------------------


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of the config (unresolved "???" stays a string, reported by ``_require``)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def _require(cfg: Mapping[str, Any], key: str, expected: str) -> Any:
    value = cfg.get(key)
    if value is None or value == "???" or value == "":
        raise ConfigError(f"data.{key} is not set (expected {expected})")
    return value


def _basename(source: str) -> str:
    """File name of a path or URL, which is also its name inside the raw directory."""
    return Path(unquote(urlparse(source).path)).name if is_url(source) else local_path(source).name


def _check_local(key: str, source: str) -> None:
    """Fail early, naming the config key, when a local source path does not exist."""
    if not is_url(source) and not local_path(source).is_file():
        raise DataError(
            f"data.{key}: {source} not found "
            f"(relative paths are relative to the working directory {os.getcwd()})"
        )


def _recorded_sha256(raw_dir: Path, name: str, source: dict[str, Any], fname: str) -> str | None:
    """The sha256 an earlier fetch recorded for ``fname`` from this same source, if any.

    Lets a file from an unpinned URL (ex3d1 without data.sha256) be reused instead of downloaded
    on every run; unpinned local files are cheap to copy, so edits to them are picked up instead.
    """
    try:
        manifest = read_manifest(raw_dir)
    except DataError:
        return None
    if manifest["name"] != name or manifest.get("source") != source:
        return None
    return manifest["files"].get(fname, {}).get("sha256")


# --- fetch --------------------------------------------------------------------------------------


def _fetch_digits(cfg: dict, raw_dir: Path, progress: bool) -> tuple[list[str], dict]:
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    digits = load_digits()
    images = digits.images
    if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 16:
        raise DataError("sklearn load_digits(): expected integer pixel values 0..16")
    save_npz_deterministic(
        raw_dir / DIGITS_FILE,
        images=images.astype(np.uint8),
        target=digits.target.astype(np.int64),
    )
    return [DIGITS_FILE], {"loader": "sklearn.datasets.load_digits"}


def _mnist_files(cfg: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    files = _require(cfg, "files", "the four MNIST files with name and md5")
    for role in MNIST_ROLES:
        entry = files.get(role) if isinstance(files, Mapping) else None
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise ConfigError(f"data.files.{role} is not set (expected {{name: ..., md5: ...}})")
    return {role: files[role] for role in MNIST_ROLES}


def _fetch_mnist(cfg: dict, raw_dir: Path, progress: bool) -> tuple[list[str], dict]:
    base_urls = list(cfg.get("base_urls") or [])
    files = _mnist_files(cfg)
    for entry in files.values():
        fetch_file(
            entry["name"],
            [f"{base.rstrip('/')}/{entry['name']}" for base in base_urls],
            raw_dir,
            md5=entry.get("md5"),
            mirror=cfg.get("mirror"),
            progress=progress,
        )
    source = {"base_urls": base_urls, "mirror": cfg.get("mirror"), "files": files}
    return [entry["name"] for entry in files.values()], source


def _fetch_ex3d1(cfg: dict, raw_dir: Path, progress: bool) -> tuple[list[str], dict]:
    url = _require(cfg, "url", "the URL or path of ex3d1.xlsx")
    fname = _basename(url)
    _check_local("url", url)
    source = {"url": url, "sha256": cfg.get("sha256")}
    sha256 = cfg.get("sha256")
    if not sha256 and is_url(url):
        sha256 = _recorded_sha256(raw_dir, "ex3d1", source, fname)
    path = fetch_file(
        fname, [url], raw_dir, sha256=sha256, mirror=cfg.get("mirror"), progress=progress
    )
    if not cfg.get("sha256"):
        logger.info("%s: sha256 %s (set data.sha256 to pin it)", fname, file_digest(path))
    return [fname], source


def _fetch_idx(cfg: dict, raw_dir: Path, progress: bool) -> tuple[list[str], dict]:
    sources = {key: _require(cfg, key, "an IDX file path or URL") for key in ("images", "labels")}
    names = {key: _basename(src) for key, src in sources.items()}
    if names["images"] == names["labels"]:
        raise ConfigError(f"data.images and data.labels share the file name {names['images']}")
    md5s, sha256s = cfg.get("md5") or {}, cfg.get("sha256") or {}
    source = {**sources, "md5": md5s, "sha256": sha256s}
    for key, src in sources.items():
        _check_local(key, src)
        fname = names[key]
        sha256 = sha256s.get(fname)
        if sha256 is None and is_url(src):
            sha256 = _recorded_sha256(raw_dir, "idx", source, fname)
        # mirror="": these are explicit files; a mirror holding a same-named file (Fashion-MNIST
        # reuses MNIST's names) must not stand in for them.
        fetch_file(
            fname, [src], raw_dir, md5=md5s.get(fname), sha256=sha256, mirror="", progress=progress
        )
    return list(names.values()), source


def _fetch_csv(cfg: dict, raw_dir: Path, progress: bool) -> tuple[list[str], dict]:
    path = str(_require(cfg, "path", "the path of a .csv or .xlsx table"))
    _check_local("path", path)
    fname = _basename(path)
    fetch_file(fname, [path], raw_dir, mirror="", progress=progress)
    return [fname], {"path": path}


_FETCHERS: dict[str, Callable[[dict, Path, bool], tuple[list[str], dict]]] = {
    "digits": _fetch_digits,
    "mnist": _fetch_mnist,
    "ex3d1": _fetch_ex3d1,
    "idx": _fetch_idx,
    "csv": _fetch_csv,
}
DATASETS = tuple(_FETCHERS)


def _dataset_name(cfg: Mapping[str, Any]) -> str:
    name = cfg.get("name")
    if name not in _FETCHERS:
        raise ConfigError(f"data.name is {name!r} (expected one of: {', '.join(DATASETS)})")
    return name


def fetch_dataset(cfg: Mapping[str, Any], raw_dir: Path, progress: bool = True) -> dict:
    """Put the dataset's raw files into ``raw_dir`` and write ``raw_dir/manifest.json``.

    Files already present with the right checksum are reused. Returns the manifest: ``name``,
    ``files`` ({filename: {"sha256", "bytes"}}) and ``source`` (where the files came from).
    """
    cfg = _plain(cfg)
    name = _dataset_name(cfg)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    files, source = _FETCHERS[name](cfg, raw_dir, progress)
    return write_manifest(raw_dir, name, files, source)


# --- load ---------------------------------------------------------------------------------------


def _pixel_names(shape: tuple[int, int], order: str = "C") -> list[str]:
    """Names of the flattened pixels, in the order ``reshape(-1, order=order)`` lists them."""
    rows, cols = np.indices(shape)
    return [
        f"pixel_{r}_{c}"
        for r, c in zip(rows.ravel(order=order), cols.ravel(order=order), strict=True)
    ]


def _image_dataset(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int],
    pixel_range: tuple[float, float] | None,
    class_names: list[str],
    *,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    order: str = "C",
) -> RawDataset:
    return RawDataset(
        name=name,
        task="classification",
        X=X,
        y=y.astype(np.int64),
        X_test=X_test,
        y_test=None if y_test is None else y_test.astype(np.int64),
        class_names=class_names,
        image_shape=image_shape,
        pixel_range=pixel_range,
        feature_names=_pixel_names(image_shape, order),
    )


def _check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"{path}: labels span {labels.min()}..{labels.max()} (expected 0..{n_classes - 1})"
        )


def _load_digits(cfg: dict, raw_dir: Path) -> RawDataset:
    path = raw_dir / DIGITS_FILE
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, target = npz["images"], npz["target"]
    except (OSError, ValueError, KeyError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable digits archive ({reason}; re-run fetch)") from None
    if images.ndim != 3 or images.shape[1:] != (8, 8) or target.shape != images.shape[:1]:
        raise DataError(
            f"{path}: images {images.shape} / target {target.shape} "
            "(expected (n, 8, 8) and (n,); re-run fetch)"
        )
    _check_labels(path, target, 10)
    X = images.reshape(len(images), 64)
    return _image_dataset("digits", X, target, (8, 8), (0.0, 16.0), DIGIT_CLASSES)


def _load_mnist(cfg: dict, raw_dir: Path) -> RawDataset:
    files = {role: raw_dir / entry["name"] for role, entry in _mnist_files(cfg).items()}
    X, y = read_idx_pair(files["train_images"], files["train_labels"])
    X_test, y_test = read_idx_pair(files["test_images"], files["test_labels"])
    if X.shape[1:] != X_test.shape[1:]:
        raise DataError(
            f"{files['test_images']}: images are {X_test.shape[1:]} but "
            f"{files['train_images']} holds {X.shape[1:]} images"
        )
    _check_labels(files["train_labels"], y, 10)
    _check_labels(files["test_labels"], y_test, 10)
    shape = (int(X.shape[1]), int(X.shape[2]))
    return _image_dataset(
        "mnist", X, y, shape, (0.0, 255.0), DIGIT_CLASSES, X_test=X_test, y_test=y_test
    )


def _load_idx(cfg: dict, raw_dir: Path) -> RawDataset:
    images = raw_dir / _basename(cfg["images"])
    labels = raw_dir / _basename(cfg["labels"])
    X, y = read_idx_pair(images, labels)
    if y.size == 0 or y.max() < 1:
        raise DataError(f"{labels}: a single class or no labels (expected at least 2 classes)")
    n_classes = int(y.max()) + 1
    _check_labels(labels, y, n_classes)
    names = [str(k) for k in range(n_classes)]
    return _image_dataset("idx", X, y, (int(X.shape[1]), int(X.shape[2])), (0.0, 255.0), names)


def _load_ex3d1(cfg: dict, raw_dir: Path) -> RawDataset:
    from scratchlab.data.ex3d1 import read_ex3d1  # pandas + openpyxl: only for this dataset

    X, y = read_ex3d1(raw_dir / _basename(cfg["url"]))
    # Octave's 1-based labels: 10 stands for the digit 0.
    y = np.where(y == 10, 0, y)
    return _image_dataset("ex3d1", X, y, (20, 20), None, DIGIT_CLASSES, order="F")


def _load_csv(cfg: dict, raw_dir: Path) -> RawDataset:
    from scratchlab.data.tabular import read_table  # pandas: only for this dataset

    task = _require(cfg, "task", "'classification' or 'regression'")
    table = read_table(
        raw_dir / _basename(str(cfg["path"])),
        target=str(_require(cfg, "target", "the name of the target column")),
        task=task,
        sheet=cfg.get("sheet"),
    )
    return RawDataset(
        name="csv",
        task=task,
        X=table.X,
        y=table.y,
        X_test=None,
        y_test=None,
        class_names=table.class_names,
        image_shape=None,
        pixel_range=None,
        feature_names=table.feature_names,
    )


_LOADERS: dict[str, Callable[[dict, Path], RawDataset]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "ex3d1": _load_ex3d1,
    "idx": _load_idx,
    "csv": _load_csv,
}


def _expected_files(name: str, cfg: dict) -> list[str]:
    if name == "digits":
        return [DIGITS_FILE]
    if name == "mnist":
        return [entry["name"] for entry in _mnist_files(cfg).values()]
    keys = {"ex3d1": ("url",), "idx": ("images", "labels"), "csv": ("path",)}[name]
    return [_basename(str(_require(cfg, key, "a path or URL"))) for key in keys]


def load_dataset(cfg: Mapping[str, Any], raw_dir: Path) -> RawDataset:
    """Load the dataset fetched into ``raw_dir``, after checking its files against the manifest.

    Image datasets are classification only; a ``data.task`` saying otherwise is a config error.
    """
    cfg = _plain(cfg)
    name = _dataset_name(cfg)
    if name != "csv" and cfg.get("task", "classification") != "classification":
        raise ConfigError(f"data.task is {cfg['task']!r} but dataset '{name}' is classification")
    raw_dir = Path(raw_dir)
    verify_manifest(raw_dir, name, _expected_files(name, cfg))
    dataset = _LOADERS[name](cfg, raw_dir)
    logger.info(
        "loaded %s: X %s, %d classes%s",
        name,
        dataset.X.shape,
        len(dataset.class_names),
        "" if dataset.X_test is None else f", official test split {dataset.X_test.shape}",
    )
    return dataset
