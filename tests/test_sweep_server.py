"""A sweep against a real ``mlflow server`` on loopback, checked through its REST API."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from servers import mlflow_server
from test_sweep_support import sweep

pytestmark = pytest.mark.slow

def _get(url: str, **query: str) -> dict:
    full = f"{url}?{urllib.parse.urlencode(query)}" if query else url
    with urllib.request.urlopen(full, timeout=10) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(tmp_path: Path):
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts",
                       tmp_path / "server.log") as url:
        yield url


def test_sweep_lands_on_the_server(server: str, tmp_path: Path) -> None:
    sweep(tmp_path, server, "optimizer.lr=0.1,1")
    api = f"{server}/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name", experiment_name="scratchlab")
    found = _post(f"{api}/runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100,
    })["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in found]
    parents = [r for r, t in zip(found, tags, strict=True) if t.get("sweep_role") == "parent"]
    assert len(parents) == 1
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED"
    kids = [r for r, t in zip(found, tags, strict=True) if t.get("mlflow.parentRunId") == parent_id]
    assert sorted(r["info"]["run_name"] for r in kids) == ["optimizer.lr=0.1", "optimizer.lr=1"]
    for kid in kids:
        assert kid["info"]["status"] == "FINISHED"
        metrics = {m["key"] for m in kid["data"]["metrics"]}
        assert {"loss", "val_loss", "test_accuracy"} <= metrics
        files = _get(f"{api}/artifacts/list", run_id=kid["info"]["run_id"]).get("files", [])
        assert {"config.yaml", "history.png", "evaluation"} <= {f["path"] for f in files}
    compared = _get(f"{api}/artifacts/list", run_id=parent_id, path="comparison")["files"]
    assert {f["path"] for f in compared} == {
        "comparison/comparison.png", "comparison/runs.csv", "comparison/runs.json"
    }
    history = _get(f"{api}/metrics/get-history", run_id=kids[0]["info"]["run_id"],
                   metric_key="val_loss")["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2]
