"""Everything a job tells MLflow goes through one :class:`RunRecorder`, bound to one run.

Training sees the recorder only as a callback (:class:`EpochMetrics`), so the trainer itself
knows nothing of MLflow. Epoch metrics are sent at most every ``FLUSH_S`` seconds, several
epochs in one ``log_batch`` (each call costs ~20 ms on SQLite, a round trip to a server): a
curve in the UI lags by at most that, a short trial makes one call instead of one per epoch,
and whatever is pending is sent before the run ends, however it ends.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy
import yaml
from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.utils.time import get_current_time_millis

from scratchlab.core.signals import deferred_interrupts
from scratchlab.nn.callbacks import Callback
from scratchlab.nn.persistence import save_network
from scratchlab.tracking.model import log_pyfunc_model
from scratchlab.tracking.outbox import Outbox, outbox_of
from scratchlab.tracking.uri import is_http

MAX_PARAM_CHARS = 6000
MAX_BATCH_METRICS = 1000  # MLflow's limit per log_batch request
FLUSH_S = 2.0


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
    """Params, tags, metrics, artifacts and the model of one MLflow run.

    With an HTTP tracking server every write goes through the run's outbox
    (``tracking.outbox``): an outage spools it, in order, instead of stopping training.
    """

    def __init__(self, run_id: str, retry_window_s: float = 30.0) -> None:
        self.run_id = run_id
        self.pending: list[Metric] = []
        self.flushed_at = time.monotonic()
        self.client = mlflow.MlflowClient()
        uri = mlflow.get_tracking_uri()
        self.outbox = (outbox_of(run_id) or Outbox(run_id, uri, retry_window_s)
                       if is_http(uri) else None)

    def _send(self, op: dict[str, Any], direct: Callable[[], object],
              files: list[Path] = ()) -> None:
        with deferred_interrupts():
            if self.outbox is None:
                direct()
            else:
                self.outbox.send(op, direct, files)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened, as MLflow stores them (strings, within its length limit)."""
        flat = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(params).items()]
        self._send({"kind": "batch", "params": [[p.key, p.value] for p in flat]},
                   lambda: self.client.log_batch(self.run_id, params=flat, synchronous=True))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._send({"kind": "batch", "tags": [[t.key, t.value] for t in batch]},
                   lambda: self.client.log_batch(self.run_id, tags=batch, synchronous=True))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, *,
                    defer: bool = False) -> None:
        """Send the metrics at ``step`` now, or with ``defer`` when ``FLUSH_S`` has passed
        since the last send (:meth:`flush` sends the rest)."""
        now = get_current_time_millis()
        self.pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if not defer or time.monotonic() - self.flushed_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Send every pending metric, in as few ``log_batch`` calls as MLflow allows."""
        self.flushed_at = time.monotonic()
        while self.pending:
            batch, self.pending = (self.pending[:MAX_BATCH_METRICS],
                                   self.pending[MAX_BATCH_METRICS:])
            rows = [[m.key, m.value, m.timestamp, m.step] for m in batch]
            self._send({"kind": "batch", "metrics": rows},
                       lambda b=batch: self.client.log_batch(self.run_id, metrics=b,
                                                             synchronous=True))

    def log_input(self, dataset: DatasetInput) -> None:
        """A dataset the run used (``tracking.lineage``): the UI's Datasets column."""
        self._send({"kind": "input", **dataset.to_dictionary()},  # its dataset and tags
                   lambda: self.client.log_inputs(self.run_id, datasets=[dataset]))

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self._send({"kind": "artifact", "path": artifact_path},
                       lambda p=path: self.client.log_artifact(self.run_id, str(p),
                                                               artifact_path), [Path(path)])

    def log_dict(self, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(name).name
            text = (yaml.safe_dump(obj, default_flow_style=False)
                    if local.suffix in (".yaml", ".yml") else json.dumps(obj, indent=2))
            local.write_text(text)
            self.log_artifacts([local], str(Path(name).parent) if "/" in name else None)

    def log_figure(self, figure: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(name).name
            figure.savefig(local)
            self.log_artifacts([local], str(Path(name).parent) if "/" in name else None)

    def log_model(self, net: Any, input_example: Any) -> None:
        """The network as the run's pyfunc model (``tracking.model``), spooled as weights."""
        with tempfile.TemporaryDirectory() as tmp:
            files = [Path(tmp) / "network"]
            save_network(net, files[0] / "network.npz")
            if input_example is not None:
                numpy.save(Path(tmp) / "example.npy", numpy.asarray(input_example))
                files.append(Path(tmp) / "example.npy")
            self._send({"kind": "model"},
                       lambda: log_pyfunc_model(net, name="model", input_example=input_example),
                       files)


class EpochMetrics(Callback):
    """Each epoch's metrics to the run (steps numbered from 1), batched in time (``FLUSH_S``)."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder

    def on_epoch_end(self, epoch, logs, net, history):
        self.recorder.log_metrics(logs, step=epoch + 1, defer=True)

    def on_train_end(self, net, history) -> None:
        self.recorder.flush()
