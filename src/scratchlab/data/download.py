"""Fetch one file from a mirror, URLs or local paths into a directory, verified by checksum.

A file only ever appears at its final name after its checksums matched: local copies and
downloads go to a temporary name in the destination directory and are renamed when verified.
"""

import gzip
import hashlib
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from scratchlab.core.errors import DataError
from scratchlab.core.files import atomic_path
from scratchlab.core.progress import download_progress
from scratchlab.data.base import is_url, local_path

logger = logging.getLogger(__name__)

MIRROR_ENV = "SCRATCHLAB_DATA_MIRROR"
_TIMEOUT_S = 60
_CHUNK = 1 << 16


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks so large files need little memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def content_digest(path: str | Path) -> str:
    """sha256 of the file's content: decompressed when it is gzip (by its magic), else its bytes.

    Mirrors recompress files (Debian's Fashion-MNIST): the .gz bytes differ, the content not.
    """
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    if not compressed:
        return file_digest(path)
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return "unreadable (not a complete gzip stream)"
    return digest.hexdigest()


@dataclass(frozen=True)
class Checksums:
    """What a fetched file must match: ``sha256`` of its bytes if given; then, if given, its
    official ``md5`` OR the ``content_sha256`` of its decompressed content (either suffices)."""

    md5: str | None = None
    sha256: str | None = None
    content_sha256: str | None = None

    def __bool__(self) -> bool:
        return bool(self.md5 or self.sha256 or self.content_sha256)

    def problem(self, path: Path) -> str | None:
        """Why ``path`` fails, in one phrase naming what was found and expected, else None."""
        if self.sha256 and (got := file_digest(path)) != self.sha256.lower():
            return f"sha256 is {got}, expected {self.sha256.lower()}"
        found = []
        if self.md5:
            got = file_digest(path, "md5")
            if got == self.md5.lower():
                return None
            found.append(f"md5 is {got}, expected {self.md5.lower()}")
        if self.content_sha256:
            got = content_digest(path)
            if got == self.content_sha256.lower():
                return None
            found.append(f"decompressed content sha256 is {got}, expected "
                         f"{self.content_sha256.lower()}")
        return " and ".join(found) or None


def _candidates(name: str, sources: list[str], mirror: str | None) -> list[str]:
    """The mirror's copy of ``name`` first (if any mirror is set), then ``sources`` in order."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if not mirror:
        return list(sources)
    if is_url(mirror):
        return [f"{mirror.rstrip('/')}/{name}", *sources]
    return [str(local_path(mirror) / name), *sources]


class _Unreachable(DataError):
    """The server could not be reached at all (a mirror may help, unlike a bad file)."""


def _network_error(exc: OSError, url: str) -> DataError:
    """What went wrong, in words a user can act on: requests nests urllib3's and the socket's
    errors three deep in its message, so name the common cases and keep the rest whole."""
    import requests

    text = str(exc)
    host = urlparse(url).netloc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return DataError(f"HTTP {exc.response.status_code} {exc.response.reason}")
    if isinstance(exc, requests.Timeout):
        return _Unreachable(f"no answer from {host} within {_TIMEOUT_S} s")
    if isinstance(exc, requests.ConnectionError):
        if "NameResolutionError" in text or "Name or service not known" in text:
            return _Unreachable(f"cannot resolve {host} (no network?)")
        if "Connection refused" in text:
            return _Unreachable(f"connection refused by {host}")
        return _Unreachable(_one_line(exc))
    # anything else (a broken transfer, the temp file unwritable) is not cured by a mirror
    return DataError(_one_line(exc) or type(exc).__name__)


def _fetch_into(tmp: Path, source: str, progress: bool) -> None:
    """Copy or download ``source`` to ``tmp``; raise DataError with a short reason on failure."""
    if is_url(source):
        import pooch  # with requests, ~0.3 s to import: only when there is something to download

        # a bar on a terminal, a log line per tenth elsewhere (``core.progress``)
        bar = download_progress(Path(urlparse(source).path).name or source, progress)
        downloader = pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK,
                                          timeout=_TIMEOUT_S)
        try:
            downloader(source, str(tmp), None)
        except OSError as exc:  # requests' exceptions all derive from OSError
            raise _network_error(exc, source) from None
        return
    path = local_path(source)
    if not path.is_file():
        raise DataError("not found" if not path.exists() else "not a regular file")
    try:
        shutil.copyfile(path, tmp)
    except OSError as exc:
        raise DataError(f"cannot copy ({exc.strerror or exc})") from None


def fetch_file(
    name: str,
    sources: list[str],
    dest_dir: Path,
    *,
    checksums: Checksums = Checksums(),
    mirror: str | None = None,
    progress: bool = True,
) -> Path:
    """Make ``dest_dir/name`` hold the file, verified against ``checksums`` when given.

    ``sources`` are URLs or local paths of this very file. ``mirror`` (a directory or base URL
    holding ``name``; when None, env ``SCRATCHLAB_DATA_MIRROR``; "" disables mirrors) is tried
    first, then the sources in order. An existing file with matching checksums is reused; one
    with wrong checksums is deleted. Without any checksum the file is always fetched afresh,
    since nothing could tell a stale copy apart.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / name
    if target.is_file() and checksums:
        problem = checksums.problem(target)
        if problem is None:
            logger.info("%s: already present and verified, reusing it", target)
            return target
        logger.warning("%s: %s; deleting it and fetching again", target, problem)
        target.unlink()
    candidates = _candidates(name, sources, mirror)
    if not candidates:
        raise DataError(f"{name}: no source to fetch it from (no mirror and no URLs/paths given)")
    failures, unreachable = [], False
    for source in candidates:
        try:
            with atomic_path(target) as tmp:
                logger.info("fetching %s from %s", name, source)
                _fetch_into(tmp, source, progress)
                problem = checksums.problem(tmp)
                if problem is not None:
                    raise DataError(problem)
        except (DataError, OSError) as exc:  # OSError: the temp file could not be written/moved
            reason = _one_line(exc)
            unreachable |= isinstance(exc, _Unreachable)
            logger.warning("%s: %s (from %s)", name, reason, source)
            failures.append(f"{reason} (from {source})")
            continue
        logger.info("%s: saved to %s", name, target)
        return target
    hint = ""
    if unreachable and mirror is None and not os.environ.get(MIRROR_ENV):
        hint = f"; to use a local copy, set data.mirror or {MIRROR_ENV} to its directory"
    if len(failures) == 1:
        raise DataError(f"{name}: {failures[0]}{hint}")
    raise DataError(f"{name}: all {len(failures)} sources failed: {'; '.join(failures)}{hint}")
