"""Atomic file writes: a reader (or DVC) never sees a half-written output.

Everything is written to a temp file in the destination directory and moved into place with
``os.replace`` only once complete; on any error the temp file is removed and nothing changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scratchlab.errors import DataError, ScratchlabError

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
