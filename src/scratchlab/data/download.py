"""Fetch one file from a mirror, URLs or local paths into a directory, verified by checksum.

A file only ever appears at its final name after its checksums matched: local copies and
downloads go to a temporary name in the destination directory and are renamed when verified.
"""

import hashlib
import logging
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from scratchlab.errors import DataError
from scratchlab.io import atomic_path

logger = logging.getLogger(__name__)

MIRROR_ENV = "SCRATCHLAB_DATA_MIRROR"
_URL_SCHEMES = ("http", "https")
_TIMEOUT_S = 60
_CHUNK = 1 << 16


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks so large files need little memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


def is_url(source: str) -> bool:
    """True for http(s) URLs, which are downloaded; anything else (or file://) is a local path."""
    return urlparse(str(source)).scheme in _URL_SCHEMES


def local_path(source: str) -> Path:
    """The filesystem path of a local source: a plain path (``~`` expanded) or a file:// URL."""
    parsed = urlparse(source)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(source).expanduser()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _mismatch(path: Path, expected: dict[str, str]) -> str | None:
    """Describe the first checksum of ``path`` that differs from ``expected``, else None."""
    for algo, want in expected.items():
        got = file_digest(path, algo)
        if got != want:
            return f"{algo} is {got}, expected {want}"
    return None


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

        downloader = pooch.HTTPDownloader(
            progressbar=progress, chunk_size=_CHUNK, timeout=_TIMEOUT_S
        )
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
    md5: str | None = None,
    sha256: str | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> Path:
    """Make ``dest_dir/name`` hold the file, verified against ``md5``/``sha256`` when given.

    ``sources`` are URLs or local paths of this very file. ``mirror`` (a directory or base URL
    holding ``name``; when None, env ``SCRATCHLAB_DATA_MIRROR``; "" disables mirrors) is tried
    first, then the sources in order. An existing file with matching checksums is reused; one
    with wrong checksums is deleted. Without any checksum the file is always fetched afresh,
    since nothing could tell a stale copy apart.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / name
    expected = {algo: v.lower() for algo, v in (("md5", md5), ("sha256", sha256)) if v}
    if target.is_file() and expected:
        problem = _mismatch(target, expected)
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
                problem = _mismatch(tmp, expected)
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
