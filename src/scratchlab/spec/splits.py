"""The train/validation/test arrays the network consumes, and their files in data/processed.

``save_splits`` writes them byte-for-byte reproducibly (DVC hashes change only when the
arrays do); ``load_splits`` reads them back, a damaged file being one line naming it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scratchlab.core.errors import DataError
from scratchlab.core.files import RECOVER, read_json, write_json_atomic, write_npz_atomic

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split: inputs ``X`` (n, d) float32, labels/targets ``y`` and network targets ``Y``."""

    X: np.ndarray
    y: np.ndarray
    Y: np.ndarray

    def __len__(self) -> int:
        return len(self.X)

    def __iter__(self):
        return iter((self.X, self.y, self.Y))


@dataclass(frozen=True)
class Splits:
    """The three splits plus what evaluation and plotting need to know about them."""

    train: Split
    val: Split
    test: Split
    task: str
    class_names: list[str] = field(default_factory=list)
    image_shape: tuple[int, int] | None = None
    feature_names: list[str] = field(default_factory=list)

    @property
    def input_dim(self) -> int:
        return self.train.X.shape[1]

    @property
    def output_dim(self) -> int:
        return self.train.Y.shape[1]


def stats(splits: Splits) -> dict[str, Any]:
    """Small summary of the splits, written next to them (and shown by ``dvc metrics``)."""
    out: dict[str, Any] = {
        "task": splits.task,
        "input_dim": splits.input_dim,
        "output_dim": splits.output_dim,
        "class_names": splits.class_names,
        "image_shape": list(splits.image_shape) if splits.image_shape else None,
        "feature_names": splits.feature_names,
    }
    for name in SPLITS:
        part: Split = getattr(splits, name)
        entry: dict[str, Any] = {"n": len(part), "x_min": float(part.X.min()),
                                 "x_max": float(part.X.max())}
        if splits.task == "classification":
            entry["class_counts"] = np.bincount(part.y, minlength=splits.output_dim).tolist()
        out[name] = entry
    return out


def save_splits(splits: Splits, out_dir: Path) -> None:
    """Write ``{train,val,test}.npz`` and ``stats.json`` byte-for-byte reproducibly."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        part: Split = getattr(splits, name)
        write_npz_atomic(out_dir / f"{name}.npz", X=part.X, y=part.y, Y=part.Y)
    write_json_atomic(out_dir / "stats.json", stats(splits))


def load_splits(in_dir: Path) -> Splits:
    """Read what :func:`save_splits` wrote; a missing or damaged file is a DataError naming it
    and how to get it back."""
    meta = read_json(in_dir / "stats.json")
    parts = {}
    for name in SPLITS:
        path = in_dir / f"{name}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                parts[name] = Split(npz["X"], npz["y"], npz["Y"])
        except FileNotFoundError:
            raise DataError(f"{path}: not found ({RECOVER})") from None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DataError(f"{path}: damaged split file ({reason}; {RECOVER})") from None
        if parts[name].X.ndim != 2 or len({len(a) for a in parts[name]}) != 1:
            raise DataError(f"{path}: arrays X, y, Y do not line up ({RECOVER})")
    try:
        shape = meta.get("image_shape")
        return Splits(**parts, task=meta["task"], class_names=list(meta["class_names"]),
                      image_shape=tuple(shape) if shape else None,
                      feature_names=list(meta.get("feature_names", [])))
    except (AttributeError, KeyError, TypeError) as exc:
        raise DataError(f"{in_dir / 'stats.json'}: not the stats preprocess writes ({exc!r}; "
                        f"{RECOVER})") from None


def load_manifest(in_dir: Path) -> dict[str, Any]:
    """The raw data's manifest preprocess copied beside the splits (its sha256s tag the run)."""
    path = in_dir / "manifest.json"
    manifest = read_json(path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            for entry in files.values()):
        raise DataError(f"{path}: expected 'files' with a sha256 each ({RECOVER})")
    return manifest
