"""Where a study lives: the Optuna storage URL, and the storage opened with trial heartbeats.

Any Optuna storage: an SQLAlchemy URL (``postgresql+psycopg2://``, ``mysql://``,
``sqlite:///``) or ``journal:PATH`` (Optuna's journal file, for a shared filesystem). The default
is ``optuna.db`` beside the MLflow SQLite store. SQL storages get Optuna's trial heartbeats: a
trial whose worker stops beating for ``GRACE_BEATS`` intervals is failed by whichever worker
looks next, which then calls the storage's stale-trial callback (``sweeps.retries``).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from scratchlab.core.errors import ConfigError, TrackingError
from scratchlab.tracking.store import first_line
from scratchlab.tracking.uri import dialect, redact

JOURNAL = "journal:"
OPTUNA_DB = "optuna.db"
SQLITE_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10
TRIAL_HEARTBEAT_S = 10  # how often a running trial tells the storage its worker lives
GRACE_BEATS = 3  # missed trial heartbeats before the trial is failed as its worker's death

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def storage_url(given: str | None, default_dir: Path) -> str:
    """The storage to use: ``given`` (normalised), else ``sqlite:///<default_dir>/optuna.db``."""
    if not given:
        default_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{default_dir / OPTUNA_DB}"
    if given.startswith(JOURNAL):
        path = given.removeprefix(JOURNAL)
        path = path.removeprefix("//") if path.startswith("///") else path
        if not path:
            raise ConfigError(f"--storage {given}: expected journal:PATH (a journal file)")
        return JOURNAL + str(Path(path).expanduser().resolve())
    if "://" not in given:
        raise ConfigError(f"--storage {given}: expected an SQLAlchemy URL "
                          "(postgresql+psycopg2://..., mysql://..., sqlite:///...) or journal:PATH")
    return with_installed_driver(given)


def with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is there."""
    scheme, rest = url.split("://", 1)
    if scheme != "postgresql":
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return url


def journal_file(url: str) -> Path | None:
    return Path(url.removeprefix(JOURNAL)) if url.startswith(JOURNAL) else None


def open_storage(url: str, heartbeat_s: int, on_stale: StaleCallback
                 ) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (call under ``sweeps.locks.storage_lock``: it creates the
    schema). SQL storages beat every ``heartbeat_s`` seconds (0: no heartbeats)."""
    journal = journal_file(url)
    try:
        if journal is not None:
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite:"):
            engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        elif dialect(url) in ("postgresql", "mysql", "mariadb"):
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        heartbeat: dict[str, Any] = {}
        if heartbeat_s > 0:
            heartbeat = {"heartbeat_interval": heartbeat_s,
                         "grace_period": GRACE_BEATS * heartbeat_s,
                         "heartbeat_stale_trial_callback": on_stale}
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except (ConfigError, TrackingError):
        raise
    except Exception as exc:
        raise TrackingError(f"{redact(url)}: cannot open the study storage "
                            f"({first_line(exc)})") from exc


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    """Whether trials on ``storage`` beat (so a dead worker's trial is noticed and retried)."""
    return (isinstance(storage, optuna.storages.RDBStorage)
            and storage.get_heartbeat_interval() is not None)


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose workers stopped beating; the storage's stale-trial callback then
    runs for each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
