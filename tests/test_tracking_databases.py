"""Tracking URIs that name a database other than SQLite: checked in seconds, not minutes."""

from __future__ import annotations

import time

import pytest

from scratchlab.core.errors import TrackingError
from scratchlab.tracking.store import check_store
from scratchlab.tracking.uri import artifact_location, database_uri
from servers import free_port


def test_an_unreachable_database_fails_within_seconds() -> None:
    uri = f"postgresql+psycopg2://scratchlab:secret@127.0.0.1:{free_port()}/mlflow"
    started = time.monotonic()
    with pytest.raises(TrackingError, match="database unreachable") as caught:
        check_store(uri)
    assert time.monotonic() - started < 5  # MLflow alone retries for minutes
    assert "secret" not in str(caught.value) and ":***@" in str(caught.value)
    assert caught.value.exit_code == 4


def test_a_bare_postgresql_uri_without_psycopg3_says_what_to_write() -> None:
    pytest.importorskip("psycopg2")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("psycopg 3 is installed: postgresql:// works as it is")
    with pytest.raises(TrackingError, match=r"postgresql\+psycopg2://"):
        check_store(f"postgresql://scratchlab@127.0.0.1:{free_port()}/mlflow")


def test_database_artifacts_go_to_the_project_store(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SCRATCHLAB_ROOT", str(tmp_path))
    assert database_uri("postgresql+psycopg2://u@h/db") and database_uri("mysql://u@h/db")
    assert not database_uri("sqlite:////x/mlflow.db") and not database_uri("http://h:5000")
    expected = (tmp_path / "mlruns" / "artifacts").as_uri()
    assert artifact_location("postgresql+psycopg2://u@h/db") == expected
    assert artifact_location("http://127.0.0.1:5000") is None  # the server decides
