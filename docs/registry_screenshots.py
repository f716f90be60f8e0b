"""Regenerate docs/mlflow-datasets.png and docs/mlflow-champion.png for docs/registry.md.

Not part of the test suite. Needs Debian's ``chromium``; from the repository root with the
project's venv active:

    python docs/registry_screenshots.py

It trains two short digits runs (lr 0.1 and 0.3) into a temp SQLite store, promotes the second
(``scratchlab promote``), starts ``mlflow ui`` on a free loopback port and has headless Chromium
screenshot the experiment's runs table (the Datasets column) and the registered model's page
(the ``champion`` alias); then stops the server. About a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
NAME = "scratchlab-digits"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def screenshot(url: str, out: Path, size: str) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--hide-scrollbars", f"--window-size={size}", "--virtual-time-budget=20000",
                    f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        for lr in ("0.1", "0.3"):
            subprocess.run([sys.executable, "-m", "scratchlab.train", f"optimizer.lr={lr}",
                            "train.epochs=5", "train.progress=false",
                            f"hydra.run.dir={tmp}/run-{lr}"], env=env, check=True)
        run_id = json.loads(Path(f"{tmp}/run-0.3/run.json").read_text())["run_id"]
        subprocess.run([sys.executable, "-m", "scratchlab.cli", "promote", run_id], env=env,
                       check=True)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
             "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/health")
            import mlflow

            experiment = mlflow.MlflowClient(uri).get_experiment_by_name("scratchlab")
            screenshot(f"{base}/#/experiments/{experiment.experiment_id}/runs"
                       "?workflowType=machine_learning", DOCS / "mlflow-datasets.png",
                       "1700,360")
            screenshot(f"{base}/#/models/{NAME}", DOCS / "mlflow-champion.png", "1800,600")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
