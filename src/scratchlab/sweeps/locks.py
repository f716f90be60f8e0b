"""One lock per study across processes and machines: what must happen once (creating the
storage's schema, the study and its MLflow parent; the final report) happens under it.

A file storage (SQLite, journal) is locked with a file beside it (``filelock``: ``flock``, which
Linux maps to POSIX locks on NFS); a PostgreSQL or MySQL storage with the database's own
session-level advisory lock, so every machine that reaches the database is covered. Either is
released when its holder exits or dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator

from filelock import FileLock, Timeout

from scratchlab.core.errors import TrackingError
from scratchlab.core.retry import retry
from scratchlab.sweeps.storage import CONNECT_TIMEOUT_S, journal_file
from scratchlab.tracking.store import LOCK_TIMEOUT_S, first_line
from scratchlab.tracking.uri import dialect, redact, sqlite_path

log = logging.getLogger("scratchlab")

LOCK_POLL_S = 0.2


class _Held(Exception):
    """The advisory lock is held by another session (polled again)."""


@contextlib.contextmanager
def storage_lock(url: str, key: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the exclusive lock ``key`` on the storage at ``url``; TrackingError when another
    holder keeps it longer than ``timeout_s``."""
    local = sqlite_path(url) or journal_file(url)
    if local is not None:  # not <journal>.lock: Optuna's own journal lock is that file
        local.parent.mkdir(parents=True, exist_ok=True)
        suffix = ".lock" if sqlite_path(url) else ".scratchlab-lock"
        with _file_lock(local.with_name(local.name + suffix), timeout_s):
            yield
        return
    database = dialect(url)
    if database in ("postgresql", "mysql", "mariadb"):
        with _advisory_lock(url, database, key, timeout_s):
            yield
        return
    log.warning("%s: no cross-process lock for %s databases; start one worker first, then the "
                "others", redact(url), database)
    yield


@contextlib.contextmanager
def _file_lock(path, timeout_s: float) -> Iterator[None]:
    lock = FileLock(path, timeout=timeout_s, poll_interval=LOCK_POLL_S)
    try:
        lock.acquire()
    except Timeout:
        raise TrackingError(f"{path}: still locked after {timeout_s:.0f} s") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _advisory_lock(url: str, database: str, key: str, timeout_s: float) -> Iterator[None]:
    """PostgreSQL ``pg_try_advisory_lock`` or MySQL ``GET_LOCK``, tried until granted (through
    ``core.retry``) and held by one connection for the block."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool,
                                          connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        conn = engine.connect()
    except Exception as exc:
        raise TrackingError(f"{redact(url)}: cannot connect to the study storage "
                            f"({first_line(exc)})") from exc
    try:
        if database == "postgresql":
            number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            take = sqlalchemy.text("SELECT pg_try_advisory_lock(:k)").bindparams(k=number)
            give = sqlalchemy.text("SELECT pg_advisory_unlock(:k)").bindparams(k=number)
        else:  # MySQL lock names are at most 64 characters
            name = "scratchlab:" + hashlib.sha256(key.encode()).hexdigest()[:40]
            take = sqlalchemy.text("SELECT GET_LOCK(:k, 0)").bindparams(k=name)
            give = sqlalchemy.text("SELECT RELEASE_LOCK(:k)").bindparams(k=name)

        def acquire() -> None:
            if not conn.execute(take).scalar():
                conn.rollback()  # end the transaction the query opened before waiting
                raise _Held(key)
            conn.commit()

        try:
            retry(acquire, f"lock {key!r}", when=lambda exc: isinstance(exc, _Held),
                  attempts=None, timeout_s=timeout_s, delay_s=LOCK_POLL_S, backoff=1.0,
                  quiet=True)
        except _Held:
            raise TrackingError(f"{redact(url)}: lock {key!r} still held after "
                                f"{timeout_s:.0f} s") from None
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(give)
                conn.commit()
    finally:
        conn.close()
        engine.dispose()
