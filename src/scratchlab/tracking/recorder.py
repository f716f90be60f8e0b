"""Everything a job tells MLflow goes through one :class:`RunRecorder`, bound to one run.

Training sees the recorder only as a callback (:class:`EpochMetrics`: one ``log_batch`` per
epoch, never per batch: ~20 ms each on SQLite), so the trainer itself knows nothing of MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.time import get_current_time_millis

from scratchlab.nn.callbacks import Callback
from scratchlab.signals import deferred_interrupts

MAX_PARAM_CHARS = 6000


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole values (one param each)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


class RunRecorder:
    """Params, tags, metrics, artifacts and the model of one MLflow run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened, as MLflow stores them (strings, within its length limit)."""
        flat = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(params).items()]
        with deferred_interrupts():
            self.client.log_batch(self.run_id, params=flat, synchronous=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with deferred_interrupts():
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()],
                                  synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = get_current_time_millis()
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        with deferred_interrupts():
            self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            with deferred_interrupts():
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, obj: Any, name: str) -> None:
        with deferred_interrupts():
            self.client.log_dict(self.run_id, obj, name)

    def log_figure(self, figure: Any, name: str) -> None:
        with deferred_interrupts():
            self.client.log_figure(self.run_id, figure, name)


class EpochMetrics(Callback):
    """Sends each epoch's metrics to the run in one call, steps numbered from 1."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder

    def on_epoch_end(self, epoch, logs, net, history):
        self.recorder.log_metrics(logs, step=epoch + 1)
