"""Store selection side effects that users see (a real SQLite store in a temp dir)."""

import os

import pytest

from scratchlab.tracking.store import connect

BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def test_connect_turns_mlflow_download_bars_off(tracking_uri, monkeypatch) -> None:
    monkeypatch.delenv(BAR, raising=False)
    connect(None, "bars")
    assert os.environ[BAR] == "false"


@pytest.mark.parametrize("choice", ["true", "false"])
def test_connect_keeps_the_users_choice(tracking_uri, monkeypatch, choice) -> None:
    monkeypatch.setenv(BAR, choice)
    connect(None, "bars")
    assert os.environ[BAR] == choice
