"""Making sure the MLflow store is usable before training starts, and pointing MLflow at it.

Parallel sweep jobs share one SQLite file, so :func:`connect` switches it to WAL mode (readers
no longer block the writer; MLflow itself waits up to 20 s on a busy database) and serialises
the first-time schema creation with a file lock: eight processes creating the tables of a new
store at once would otherwise collide. Both are for SQLite only: an ``mlflow server`` URL is
checked on ``/health``, a database URI (``postgresql+psycopg2://``, ``mysql://``) by
connecting, each within seconds; the server or database handles concurrency itself.
Opening a store changes nothing in it: ending abandoned runs is ``tracking.liveness``'s job.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import shutil
import sqlite3
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from scratchlab.core.errors import ScratchlabError, TrackingError
from scratchlab.core.retry import retry
from scratchlab.tracking.http import fail_fast_http
from scratchlab.tracking.uri import (
    artifact_location,
    database_uri,
    default_store_dir,
    is_http,
    redact,
    sqlite_path,
    tracking_uri,
)

log = logging.getLogger(__name__)

REACHABLE_TIMEOUT_S = 3.0
SQLITE_BUSY_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 300.0
T = TypeVar("T")


def is_busy(exc: BaseException) -> bool:
    """SQLite refused at once: two connections would deadlock upgrading to a write lock (MLflow
    only waits on a plain lock); the only cure is to try again."""
    return "database is locked" in str(exc) or "database is busy" in str(exc)


# What a disk or database I/O error says, and what it means for the user (one line).
_FAULT_ERRNOS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
                 errno.EFBIG: "file size limit reached", errno.EROFS: "read-only file system",
                 errno.EIO: "disk I/O error"}
_DENIED_ERRNOS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}
_FAULT_TEXTS = (("database or disk is full", "disk full"),
                ("No space left on device", "disk full"),
                ("Disk quota exceeded", "disk quota exceeded"),
                ("File too large", "file size limit reached"),
                ("readonly database", "read-only store"),
                ("read-only file system", "read-only file system"),
                ("unable to open database file", "cannot open the database file"),
                ("disk I/O error", "disk I/O error"))


def storage_fault(exc: BaseException, uri: str) -> str | None:
    """Why the store at ``uri`` refused a write, if ``exc`` is a disk or database I/O error
    (disk full, a file-size limit, a read-only store), else None: one phrase naming the file
    when the error does, and the likely cause of SQLite's bare "disk I/O error"."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    if any(isinstance(error, ScratchlabError) for error in seen):
        return None  # ours: its one line already names the file (an output, not the store)
    for error in seen:
        if isinstance(error, OSError) and error.errno is not None:
            ours = error.filename and _in_store(error.filename, uri)
            cause = _FAULT_ERRNOS.get(error.errno) if ours or _in_mlflow(error) else None
            cause = cause or (_DENIED_ERRNOS.get(error.errno) if ours else None)
            if cause is not None:
                return f"{cause}: {error.filename}" if error.filename else cause
    text = " ".join(str(error) for error in seen if not isinstance(error, OSError))
    cause = next((cause for marker, cause in _FAULT_TEXTS if marker in text), None)
    if cause == "disk I/O error" and (db := sqlite_path(uri)) is not None:
        cause = _likely_cause(db)
    return cause


def _in_store(filename: str, uri: str) -> bool:
    """Whether ``filename`` is the store's: under its database's folder or ``mlruns/``."""
    db = sqlite_path(uri)
    roots = {default_store_dir(), *([db.parent] if db is not None else [])}
    path = Path(os.path.abspath(filename))
    return any(root == path or root in path.parents for root in roots)


def _in_mlflow(error: BaseException) -> bool:
    """Whether ``error`` was raised inside MLflow (writing the store or its artifacts)."""
    import mlflow

    package = os.path.dirname(mlflow.__file__)
    return any(frame.filename.startswith(package)
               for frame in traceback.extract_tb(error.__traceback__))


def _likely_cause(db: Path) -> str:
    """SQLite says "disk I/O error" for a full disk, a file-size limit and a store made
    read-only under it alike: look."""
    for path in (db, db.parent):
        if path.exists() and not os.access(path, os.W_OK):
            return f"read-only store: {path} is not writable"
    with contextlib.suppress(OSError):
        if shutil.disk_usage(db.parent).free < 1 << 20:
            return f"disk full: {db.parent}"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return (f"disk I/O error; this process may not write files over {limit} bytes "
                "(ulimit -f)")
    return "disk I/O error"


def busy_retry(call: Callable[[], T], what: str) -> T:
    """``call`` retried while the store is busy (see :func:`is_busy`)."""
    return retry(call, f"{what}: store busy", when=is_busy)


def check_store(uri: str) -> None:
    """Fail in seconds, with the URI or path in the message, if the store cannot be used."""
    if is_http(uri):
        _check_server(uri)
    elif database_uri(uri):
        _check_database(uri)
    elif (db := sqlite_path(uri)) is not None:
        _check_sqlite(db)


def _check_server(uri: str) -> None:
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=REACHABLE_TIMEOUT_S) as resp:
            if resp.status != 200:
                raise TrackingError(f"{uri}: server answered {resp.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"{uri}: tracking server unreachable ({reason}); start it or unset "
                            "MLFLOW_TRACKING_URI") from exc


def _check_sqlite(db: Path) -> None:
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"{db.parent}: cannot create the MLflow store ({exc.strerror})"
                            ) from exc
    for target in [db.parent, db] if db.exists() else [db.parent]:
        if not os.access(target, os.W_OK):
            raise TrackingError(f"{target}: MLflow store is not writable")


def _check_database(uri: str) -> None:
    """Connect once, with a short timeout: MLflow itself retries an unreachable database for
    minutes before it says anything."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    scheme = uri.split("://", 1)[0]
    timeout = {} if scheme.startswith("mssql") else {"connect_timeout": int(REACHABLE_TIMEOUT_S)}
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=timeout)
    except ModuleNotFoundError as exc:
        hint = (" (SQLAlchemy reads postgresql:// as psycopg 3; with psycopg2 write "
                "postgresql+psycopg2://)" if scheme == "postgresql" else "")
        raise TrackingError(f"{redact(uri)}: no database driver: {exc}{hint}") from exc
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise TrackingError(f"{redact(uri)}: database unreachable ({first_line(exc)})") from exc
    finally:
        engine.dispose()


_connected: dict[tuple[str, str], str] = {}


def connect(configured_uri: str | None, experiment: str) -> str:
    """Point MLflow at the store, check it, and return the experiment id (created if new).

    Done once per store and experiment in a process (the jobs of an in-process sweep share
    it)."""
    import mlflow

    uri = tracking_uri(configured_uri)
    if (uri, experiment) in _connected:
        mlflow.set_tracking_uri(uri)
        return _connected[uri, experiment]
    check_store(uri)
    if is_http(uri):
        fail_fast_http()  # seconds, not MLflow's minutes of retries, on a dead server
    mlflow.set_tracking_uri(uri)
    # MLflow draws a download bar for every model it validates (two tiny local files): noise
    # between our own epoch bars. Users who want it back set the variable themselves.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow logs every database error it raises, traceback included, before raising it: the
    # error reaches our entry points, which report it in one line (storage_fault).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        with _store_lock(uri):
            experiment_id = _experiment_id(experiment, artifact_location(uri))
    except TrackingError:
        raise
    except Exception as exc:  # any MLflow/SQLAlchemy failure talking to the store
        reason = storage_fault(exc, uri) or first_line(exc)
        raise TrackingError(f"{redact(uri)}: cannot use the MLflow store ({reason})") from exc
    _connected[uri, experiment] = experiment_id
    return experiment_id


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` while a SQLite store is switched to WAL and its schema created."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    with FileLock(db.with_name(db.name + ".lock"), timeout=LOCK_TIMEOUT_S):
        _enable_wal(db)
        yield


def _enable_wal(db: Path) -> None:
    """WAL is a property of the file: set once, every later connection uses it."""
    conn = sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _experiment_id(name: str, location: str | None) -> str:
    """Get or create ``name``; parallel jobs may race to create it, so try again on conflict."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def get_or_create() -> str:
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            return mlflow.create_experiment(name, artifact_location=location)
        if found.lifecycle_stage == "deleted":
            raise TrackingError(f"tracking.experiment={name!r} is deleted in the store; restore "
                                "it or pick another name")
        return found.experiment_id

    return retry(get_or_create, f"experiment {name!r}", quiet=True, attempts=5,
                 when=lambda exc: isinstance(exc, MlflowException))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
