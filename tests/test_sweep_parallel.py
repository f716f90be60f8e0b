"""The joblib launcher: parallel jobs in separate processes, every run recorded."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from test_sweep_support import parent_and_children, sweep

pytestmark = pytest.mark.slow


def test_four_parallel_jobs_all_recorded(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    sweep(tmp_path, uri, "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
          "optimizer.lr=0.03,0.1,0.3,1")
    parent, kids = parent_and_children(uri)
    assert parent.info.status == "FINISHED"
    assert [k.info.status for k in kids] == ["FINISHED"] * 4
    assert sorted(k.data.params["optimizer.lr"] for k in kids) == ["0.03", "0.1", "0.3", "1"]
    client = MlflowClient(tracking_uri=uri)
    for kid in kids:
        steps = [m.step for m in client.get_metric_history(kid.info.run_id, "val_loss")]
        assert steps == [1, 2]
        assert "test_accuracy" in kid.data.metrics
    assert parent.data.metrics["n_runs"] == 4
