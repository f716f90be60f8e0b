"""Eight processes writing to one fresh SQLite store at once lose no run and no metric."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from test_sweep_support import env_for

pytestmark = pytest.mark.slow

WRITERS = 8
EPOCHS = 30

# One writer = what a training job does to the store: connect (maybe creating the schema and
# the experiment), a run that always ends, one log_batch per epoch, params and an artifact.
WRITER = """
import sys, time
from scratchlab.tracking.recorder import RunRecorder
from scratchlab.tracking.run import ended_run
from scratchlab.tracking.store import connect
import mlflow
start, index, epochs = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # all writers hit the store together
experiment_id = connect(None, "concurrency")
with ended_run(experiment_id=experiment_id, run_name=f"writer-{index}", tags={"writer": index}):
    run_id = mlflow.active_run().info.run_id
    mlflow.log_params({"index": index, "epochs": epochs})
    recorder = RunRecorder(run_id)
    for epoch in range(epochs):
        recorder.log_metrics({"loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1)}, epoch + 1)
    mlflow.log_dict({"index": index}, "writer.json")
"""


def test_eight_concurrent_writers_record_everything(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    start = time.time() + 8.0  # past every writer's import time
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(start), str(i), str(EPOCHS)],
                         cwd=tmp_path, env=env_for(uri), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(WRITERS)
    ]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, "\n".join(outputs)

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in runs) == sorted(f"writer-{i}" for i in range(WRITERS))
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in ("loss", "val_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1))
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["writer.json"]
    journal = subprocess.run(["sqlite3", uri.removeprefix("sqlite:///"), "PRAGMA journal_mode"],
                             capture_output=True, text=True)
    if journal.returncode == 0:
        assert journal.stdout.strip() == "wal"
