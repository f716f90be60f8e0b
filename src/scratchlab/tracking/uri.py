"""Which MLflow store runs go to, as a URI, and what kind of store that is (no I/O here).

Default: ``sqlite:///<project root>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``
(MLflow 3 refuses the old ``./mlruns`` file store). ``tracking.uri`` or ``MLFLOW_TRACKING_URI``
(e.g. an ``mlflow server`` URL) override it. Paths are absolute so that Hydra output dirs and
DVC's temp workspaces all write to the same store.
"""

from __future__ import annotations

import os
from pathlib import Path

from scratchlab.core.paths import project_root

DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # MLflow's SQL stores besides SQLite


def default_store_dir() -> Path:
    return project_root() / "mlruns"


def tracking_uri(configured: str | None = None) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else the project's SQLite store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def dialect(uri: str) -> str:
    """``postgresql`` for ``postgresql+psycopg2://...``; ``""`` for a URI without a scheme."""
    return uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""


def database_uri(uri: str) -> bool:
    """A database other than SQLite, reached directly (``postgresql+psycopg2://...``)."""
    return dialect(uri) in DATABASE_SCHEMES


def artifact_location(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite database; for another database,
    the project's ``mlruns/artifacts`` (MLflow would use ``./mlruns`` of whichever directory
    the first run started in); a tracking server decides for itself."""
    db = sqlite_path(uri)
    if db is not None:
        return (db.parent / "artifacts").as_uri()
    return (default_store_dir() / "artifacts").as_uri() if database_uri(uri) else None


def redact(uri: str) -> str:
    """The URI without its password, for messages and tags."""
    if "://" not in uri or "@" not in uri.split("://", 1)[1]:
        return uri
    scheme, rest = uri.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"
