"""What a run could not send to its tracking server, kept on disk in order until it can.

One directory per run, ``mlruns/spool/<run_id>/``: ``target.json`` (the server and run), then
one JSON file per operation named by its sequence number (``000007.json``), written to a temp
name and renamed into place, so a crash leaves whole operations or none. Files an operation
uploads (artifacts, the model's weights and input example) sit beside it in ``000007.files/``.

Replay (:meth:`Spool.replay`) applies the operations in order and deletes each once the server
has it, so it can stop anywhere (Ctrl-C, a kill, the server gone again) and resume, and running
it again uploads nothing twice: metrics already in the run's history (same key, step, timestamp
and value) are skipped, params are write-once and re-sent with the same value, tags, artifacts
and the final status overwrite with the same content, and the model is logged once
(``tracking.model.log_spooled_model``). Only the last operation, the status the training
process recorded, ends the run. A job holds ``lock`` while it runs, so ``scratchlab sync``
leaves a live job's spool to the job.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from filelock import FileLock

from scratchlab.core.errors import DataError, TrackingError
from scratchlab.core.files import write_json_atomic
from scratchlab.core.signals import deferred_interrupts
from scratchlab.tracking.uri import default_store_dir

TARGET = "target.json"
LOCK = "lock"
SPOOL_RECOVER = "delete that file to drop the operation, or the whole directory to drop the run's"


def spool_root() -> Path:
    """``SCRATCHLAB_SPOOL``, else ``mlruns/spool`` in the project."""
    configured = os.environ.get("SCRATCHLAB_SPOOL")
    return Path(configured) if configured else default_store_dir() / "spool"


def is_spooled(run_id: str) -> bool:
    """Whether this machine holds operations of ``run_id`` not yet on its server."""
    directory = spool_root() / run_id
    return directory.is_dir() and any(directory.glob("[0-9]*.json"))


class Spool:
    """The pending operations of one run."""

    def __init__(self, run_id: str, tracking_uri: str, root: Path | None = None) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.dir = (root or spool_root()) / run_id

    @classmethod
    def open(cls, directory: Path) -> Spool:
        """The spool in ``directory`` (``scratchlab sync``), its target read back."""
        target = _read(directory / TARGET)
        if not isinstance(target, dict) or not {"run_id", "tracking_uri"} <= set(target):
            raise DataError(f"{directory / TARGET}: expected run_id and tracking_uri "
                            f"({SPOOL_RECOVER})")
        return cls(target["run_id"], target["tracking_uri"], directory.parent)

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob("[0-9]*.json")) if self.dir.is_dir() else []

    def add(self, op: dict[str, Any], files: list[Path] = ()) -> None:
        """Append ``op`` (copying ``files``, uploaded by it); whole or not at all."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / TARGET).exists():
            write_json_atomic(self.dir / TARGET, {"run_id": self.run_id,
                                                  "tracking_uri": self.tracking_uri})
        pending = self.pending()
        number = int(pending[-1].stem) + 1 if pending else 1
        if files:
            stage = self.dir / f".{number:06d}.files.tmp"
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir()
            for path in files:
                (shutil.copytree if path.is_dir() else shutil.copy2)(path, stage / path.name)
            shutil.rmtree(self.dir / f"{number:06d}.files", ignore_errors=True)  # a replay's
            os.replace(stage, self.dir / f"{number:06d}.files")  # leftover (see replay)
            op = {**op, "files": [path.name for path in files]}
        write_json_atomic(self.dir / f"{number:06d}.json", op)

    def lock(self) -> FileLock:
        """The spool's lock: a job holds it while it owns the run, so ``scratchlab sync``
        leaves a live job's spool to the job."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir / LOCK)

    def replay(self, client: Any, log_model: Callable[[Path, str], None]) -> int:
        """Send the pending operations in order; return how many went. Raises on the first
        that fails (the rest stay, in order). ``log_model(files, recover)`` logs a spooled
        model (``recover``: what to do if its files are damaged)."""
        history: dict[str, set[tuple]] = {}
        sent = 0
        for path in self.pending():
            op = _read(path)
            files = self.dir / f"{path.stem}.files"
            recover = (f"delete {path} to drop that operation, or {self.dir} to drop all of "
                       f"run {self.run_id}'s")
            try:
                apply = _decode(client, self.run_id, op, files, history,
                                partial(log_model, recover=recover))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: not a spooled operation ({exc!r}; "
                                f"{SPOOL_RECOVER})") from None
            apply()
            with deferred_interrupts():
                path.unlink()  # the operation first: files without it are only leftovers
                shutil.rmtree(files, ignore_errors=True)
            sent += 1
        return sent

    def remove_if_empty(self) -> None:
        if self.dir.is_dir() and not self.pending():
            shutil.rmtree(self.dir, ignore_errors=True)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: damaged spool file ({reason}; {SPOOL_RECOVER})") from None


def _decode(client: Any, run_id: str, op: dict, files: Path, history: dict[str, set],
            log_model: Callable[[Path], None]) -> Callable[[], None]:
    """The call that applies ``op``; KeyError, TypeError or ValueError if ``op`` is not one
    this module wrote (a spooled file's own failures then stay apart from the server's)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    kind = op["kind"]
    if kind == "batch":
        metrics = [Metric(k, float(v), int(t), int(s)) for k, v, t, s in op.get("metrics", [])]
        params = [Param(str(k), str(v)) for k, v in op.get("params", [])]
        tags = [RunTag(str(k), str(v)) for k, v in op.get("tags", [])]

        def batch() -> None:
            for key in {m.key for m in metrics} - set(history):
                history[key] = {_point(m) for m in client.get_metric_history(run_id, key)}
            fresh = [m for m in metrics if _point(m) not in history[m.key]]
            client.log_batch(run_id, metrics=fresh, params=params, tags=tags, synchronous=True)
            for m in fresh:
                history[m.key].add(_point(m))
        return batch
    if kind == "artifact":
        paths = [files / str(name) for name in op["files"]]
        if missing := [path for path in paths if not path.exists()]:
            raise ValueError(f"{missing[0]} is missing")

        def artifacts() -> None:
            for path in paths:
                log = client.log_artifacts if path.is_dir() else client.log_artifact
                log(run_id, str(path), op.get("path"))
        return artifacts
    if kind == "input":  # the store keeps one link per run and dataset: a replay adds none
        inputs = [DatasetInput(Dataset.from_dictionary(op["dataset"]),
                               [InputTag(str(k), str(v)) for k, v in op["tags"].items()])]
        return lambda: client.log_inputs(run_id, datasets=inputs)
    if kind == "model":
        return lambda: log_model(files)  # idempotent itself (log_spooled_model)
    if kind == "status":
        status, end_time = str(op["status"]), op.get("end_time")
        return lambda: client.set_terminated(run_id, status, end_time=end_time)
    raise ValueError(f"unknown kind {kind!r}")


def _point(metric: Any) -> tuple:
    """A metric's identity in its history; NaN equals NaN here (a diverged loss is logged)."""
    return (metric.step, metric.timestamp,
            "nan" if math.isnan(metric.value) else metric.value)


def unreachable(spool: Spool, window_s: float) -> TrackingError:
    count = len(spool.pending())
    waited = f" for {window_s:g} s" if window_s else ""
    return TrackingError(
        f"{spool.tracking_uri}: tracking server unreachable{waited}; {count} "
        f"operation{'s' if count != 1 else ''} of run {spool.run_id} kept in {spool.dir}; "
        "upload them with `scratchlab sync` once it is back")
