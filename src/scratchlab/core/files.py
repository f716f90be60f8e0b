"""Atomic file writes: a reader (or DVC) never sees a half-written output.

Everything is written to a temp file in the destination directory and moved into place with
``os.replace`` only once complete; on any error the temp file is removed and nothing changes.
``.npz`` files are byte-for-byte reproducible (``numpy.savez`` stamps every member with the
current time; here each gets a fixed 1980-01-01 timestamp), so DVC and MLflow hashes change
only when the arrays do.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scratchlab.core.errors import DataError, ScratchlabError

# What to do about a project file that is missing or damaged: DVC has it, or can remake it.
RECOVER = "restore it with `dvc checkout` or rebuild it with `dvc repro`"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it replaces ``path`` only if the block succeeds.

    The temp name keeps the suffix, so writers that pick a format by extension (Excel, PNG,
    gzip) still work. An OS error (disk full, read-only) becomes a one-line error naming
    ``path``; any error removes the temp file and leaves an existing ``path`` untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise ScratchlabError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Sorted, indented JSON so equal content gives equal bytes (and equal DVC hashes)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file the project wrote; missing or damaged is a one-line DataError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found ({RECOVER})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: not readable JSON ({reason}; {RECOVER})") from None


_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, Any]) -> bytes:
    """An uncompressed ``.npz`` (loadable by ``np.load``) of ``arrays`` in the order given, every
    member stamped 1980-01-01 with mode 0644: the same arrays always give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            member.external_attr = 0o644 << 16
            with archive.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_npz_atomic(path: str | Path, /, **arrays: Any) -> None:
    """:func:`npz_bytes` to ``path``, atomically, re-read and compared with the input before it
    replaces ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(npz_bytes(arrays))
        with np.load(tmp, allow_pickle=False) as back:
            for name, array in arrays.items():
                array = np.asarray(array)
                loaded = back[name] if name in back else None
                if (loaded is None or loaded.dtype != array.dtype
                        or not np.array_equal(loaded, array, equal_nan=array.dtype.kind in "fc")):
                    raise DataError(f"{path}: array '{name}' does not read back as written")
