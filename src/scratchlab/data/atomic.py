"""Atomic file writes: readers never see a partial file, even if the writer fails midway."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    The caller writes (and verifies) the temporary file inside the ``with`` block; raising there
    deletes it and leaves any existing ``path`` untouched. The temporary name lives in the same
    directory, so ``os.replace`` is an atomic rename, and keeps the suffix, so writers that pick a
    format by extension (Excel, gzip) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
