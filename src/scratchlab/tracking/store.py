"""Which MLflow store runs go to, and making sure it is usable before training starts.

Default: ``sqlite:///<project root>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``
(MLflow 3 refuses the old ``./mlruns`` file store). ``tracking.uri`` or ``MLFLOW_TRACKING_URI``
(e.g. an ``mlflow server`` URL) override it. Paths are absolute so that Hydra output dirs and
DVC's temp workspaces all write to the same store.

Parallel sweep jobs share one SQLite file, so :func:`connect` switches it to WAL mode (readers
no longer block the writer; MLflow itself waits up to 20 s on a busy database) and serialises
the first-time schema creation with a file lock: eight processes creating the tables of a new
store at once would otherwise collide. Both are for SQLite only: an ``mlflow server`` URL is
checked on ``/health``, a database URI (``postgresql+psycopg2://``, ``mysql://``) by
connecting, each within seconds; the server or database handles concurrency itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from scratchlab.errors import TrackingError
from scratchlab.paths import project_root

log = logging.getLogger(__name__)

REACHABLE_TIMEOUT_S = 3.0
SQLITE_BUSY_TIMEOUT_S = 30.0
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # MLflow's SQL stores besides SQLite


def default_store_dir() -> Path:
    return project_root() / "mlruns"


def tracking_uri(configured: str | None = None) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else the project's SQLite store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def database_uri(uri: str) -> bool:
    """A database other than SQLite, reached directly (``postgresql+psycopg2://...``)."""
    return "://" in uri and uri.split("://", 1)[0].split("+", 1)[0] in DATABASE_SCHEMES


def artifact_location(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite database; for another database,
    the project's ``mlruns/artifacts`` (MLflow would use ``./mlruns`` of whichever directory
    the first run started in); a tracking server decides for itself."""
    db = sqlite_path(uri)
    if db is not None:
        return (db.parent / "artifacts").as_uri()
    return (default_store_dir() / "artifacts").as_uri() if database_uri(uri) else None


def check_store(uri: str) -> None:
    """Fail in seconds, with the URI or path in the message, if the store cannot be used."""
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=REACHABLE_TIMEOUT_S) as resp:
                if resp.status != 200:
                    raise TrackingError(f"{uri}: server answered {resp.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"{uri}: tracking server unreachable ({reason}); start it or unset "
                "MLFLOW_TRACKING_URI"
            ) from exc
        return
    if database_uri(uri):
        _check_database(uri)
        return
    db = sqlite_path(uri)
    if db is None:
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(
            f"{db.parent}: cannot create the MLflow store ({exc.strerror})"
        ) from exc
    targets = [db.parent, db] if db.exists() else [db.parent]
    for target in targets:
        if not os.access(target, os.W_OK):
            raise TrackingError(f"{target}: MLflow store is not writable")


def _check_database(uri: str) -> None:
    """Connect once, with a short timeout: MLflow itself retries an unreachable database for
    minutes before it says anything."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    shown = _without_password(uri)
    scheme = uri.split("://", 1)[0]
    timeout = {} if scheme.startswith("mssql") else {"connect_timeout": int(REACHABLE_TIMEOUT_S)}
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=timeout)
    except ModuleNotFoundError as exc:
        hint = (" (SQLAlchemy reads postgresql:// as psycopg 3; with psycopg2 write "
                "postgresql+psycopg2://)" if scheme == "postgresql" else "")
        raise TrackingError(f"{shown}: no database driver: {exc}{hint}") from exc
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise TrackingError(f"{shown}: database unreachable ({_first_line(exc)})") from exc
    finally:
        engine.dispose()


def _without_password(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    if "@" not in rest:
        return uri
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}{':***' if ':' in credentials else ''}@{host}"


_connected: dict[tuple[str, str], str] = {}


def connect(configured_uri: str | None, experiment: str,
            stale_after_s: float | None = None) -> str:
    """Point MLflow at the store, check it, and return the experiment id (created if new).

    Done once per store and experiment in a process (the jobs of an in-process sweep share
    it). The first time a process opens a store, runs whose owner process is gone are ended
    (``liveness.reap``; ``stale_after_s``: how long another machine's run may go without a
    heartbeat)."""
    import mlflow

    from scratchlab.tracking.liveness import STALE_AFTER_S, reap_once

    uri = tracking_uri(configured_uri)
    if (uri, experiment) in _connected:
        mlflow.set_tracking_uri(uri)
        return _connected[uri, experiment]
    check_store(uri)
    if uri.startswith(("http://", "https://")):
        from scratchlab.tracking.outbox import fail_fast_http

        fail_fast_http()  # seconds, not MLflow's minutes of retries, on a dead server
    mlflow.set_tracking_uri(uri)
    # MLflow draws a download bar for every model it validates (two tiny local files): noise
    # between our own epoch bars. Users who want it back set the variable themselves.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        with _store_lock(uri):
            experiment_id = _experiment_id(experiment, artifact_location(uri))
    except TrackingError:
        raise
    except Exception as exc:  # any MLflow/SQLAlchemy failure talking to the store
        raise TrackingError(f"{uri}: cannot use the MLflow store ({_first_line(exc)})") from exc
    reap_once(uri, STALE_AFTER_S if stale_after_s is None else stale_after_s)
    _connected[uri, experiment] = experiment_id
    return experiment_id


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` while a SQLite store is switched to WAL and its schema created."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _enable_wal(db)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _enable_wal(db: Path) -> None:
    """WAL is a property of the file: set once, every later connection uses it."""
    conn = sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _experiment_id(name: str, location: str | None, attempts: int = 5) -> str:
    """Get or create ``name``; parallel jobs may race to create it, so retry on conflict."""
    import mlflow
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"tracking.experiment={name!r} is deleted in the store; restore it or pick "
                    "another name"
                )
            return found.experiment_id
        try:
            return mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
