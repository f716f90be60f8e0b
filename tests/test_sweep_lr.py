"""The learning-rate sweep end to end: a real Hydra multirun into a real SQLite store."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from test_sweep_support import env_for, parent_and_children, run, sweep

# one xdist worker runs this whole module, so its module-scoped fixture is built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_sweep_lr")]

LRS = ["0.001", "0.01", "0.1", "1", "10"]


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("lr")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    sweep_dir = sweep(tmp, uri, "+sweep=lr")
    return tmp, uri, sweep_dir


def test_one_parent_five_children_named_by_swept_value(lr_sweep) -> None:
    _, uri, sweep_dir = lr_sweep
    parent, kids = parent_and_children(uri)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "sweep optimizer.lr"
    assert [k.info.run_name for k in kids] == [f"optimizer.lr={lr}" for lr in LRS]
    sweep_id = parent.data.tags["sweep_id"]
    for num, kid in enumerate(kids):
        assert kid.data.tags["sweep_id"] == sweep_id
        assert kid.data.tags["job_num"] == str(num)
        assert kid.data.tags["sweep_role"] == "child"
    assert json.loads((sweep_dir / "sweep.json").read_text())["parent_run_id"] == (
        parent.info.run_id
    )


def test_lr_10_diverges_and_the_sweep_goes_on(lr_sweep) -> None:
    _, uri, _ = lr_sweep
    _, kids = parent_and_children(uri)
    by_lr = {k.data.params["optimizer.lr"]: k for k in kids}
    assert by_lr["10"].info.status == "FAILED"
    assert by_lr["10"].data.tags["diverged"] == "true"
    for lr in ("0.1", "1"):
        assert by_lr[lr].info.status == "FINISHED"
        assert by_lr[lr].data.tags["diverged"] == "false"
        assert by_lr[lr].data.metrics["test_accuracy"] > 0.8


def test_parent_holds_the_comparison_and_the_best_child(lr_sweep) -> None:
    _, uri, sweep_dir = lr_sweep
    parent, kids = parent_and_children(uri)
    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert names == {"comparison/comparison.png", "comparison/runs.csv", "comparison/runs.json"}
    finished = [k for k in kids if k.info.status == "FINISHED"]
    best = min(finished, key=lambda k: k.data.metrics["val_loss"])
    assert parent.data.params["best_run_id"] == best.info.run_id
    assert parent.data.tags["best_run_name"] == best.info.run_name
    assert parent.data.metrics["best_val_loss"] == best.data.metrics["val_loss"]
    assert parent.data.metrics["n_runs"] == 5 and parent.data.metrics["n_diverged"] == 1

    rows = list(csv.DictReader((sweep_dir / "comparison" / "runs.csv").open()))
    assert [r["optimizer.lr"] for r in rows] == LRS
    assert [r["status"] for r in rows] == ["FINISHED"] * 4 + ["FAILED"]
    table = json.loads((sweep_dir / "comparison" / "runs.json").read_text())
    assert table["best"]["run_id"] == best.info.run_id
    assert table["runs"][-1]["diverged"] is True
    png = (sweep_dir / "comparison" / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_compare_prints_the_sweep_and_writes_the_figure(lr_sweep) -> None:
    tmp, uri, _ = lr_sweep
    out = tmp / "compare"
    printed = run([sys.executable, "-m", "scratchlab.cli", "compare", "--last-sweep",
                   "--out", str(out)], tmp, uri)
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if "run_name" in line)
    table = lines[header + 1 : header + 6]
    assert all(f"optimizer.lr={lr}" in line for lr, line in zip(LRS, table, strict=True))
    assert "FAILED" in table[-1] and "True" in table[-1]
    assert sum(line.startswith("*") for line in table) == 1
    assert {p.name for p in out.iterdir()} == {"comparison.png", "runs.csv", "runs.json"}


def test_compare_rejects_an_unknown_parent(lr_sweep, tmp_path) -> None:
    _, uri, _ = lr_sweep
    done = subprocess.run([sys.executable, "-m", "scratchlab.cli", "compare", "--parent",
                           "0" * 32, "--out", str(tmp_path)], env=env_for(uri),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4
    assert "no such run" in done.stderr
