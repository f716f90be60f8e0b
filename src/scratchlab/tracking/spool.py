"""What a run could not send to its tracking server, kept on disk in order until it can.

One directory per run, ``mlruns/spool/<run_id>/``: ``target.json`` (the server and run), then
one JSON file per operation named by its sequence number (``000007.json``), written to a temp
name and renamed into place, so a crash leaves whole operations or none. Files an operation
uploads (artifacts, the model's weights and input example) sit beside it in ``000007.files/``.

Replay (:meth:`Spool.replay`) applies the operations in order and deletes each once the server
has it, so it can stop anywhere and resume, and running it twice uploads nothing twice:
metrics already in the run's history (same key, step, timestamp and value) are skipped,
params are write-once and re-sent with the same value, tags, artifacts and the final status
overwrite with the same content. A job holds ``lock`` while it runs, so ``scratchlab sync``
leaves a live job's spool to the job.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scratchlab.errors import DataError, TrackingError
from scratchlab.io import write_json_atomic

TARGET = "target.json"
LOCK = "lock"
SPOOL_RECOVER = "delete that file to drop the operation, or the whole directory to drop the run's"


def spool_root() -> Path:
    """``SCRATCHLAB_SPOOL``, else ``mlruns/spool`` in the project."""
    from scratchlab.tracking.store import default_store_dir

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
            os.replace(stage, self.dir / f"{number:06d}.files")
            op = {**op, "files": [path.name for path in files]}
        write_json_atomic(self.dir / f"{number:06d}.json", op)

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[bool]:
        """Hold the spool's lock (yields False when ``wait`` is off and someone holds it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / LOCK, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def replay(self, client) -> int:
        """Send the pending operations in order; return how many went. Raises on the first
        that fails (the rest stay, in order)."""
        history: dict[str, set[tuple]] = {}
        sent = 0
        for path in self.pending():
            op = _read(path)
            files = self.dir / f"{path.stem}.files"
            try:
                _apply(client, self.run_id, op, files, history)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: not a spooled operation ({exc!r}; "
                                f"{SPOOL_RECOVER})") from None
            shutil.rmtree(files, ignore_errors=True)
            path.unlink()
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


def _apply(client, run_id: str, op: dict, files: Path, history: dict[str, set]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    kind = op["kind"]
    if kind == "batch":
        metrics = [Metric(k, float(v), int(t), int(s)) for k, v, t, s in op.get("metrics", [])]
        for key in {m.key for m in metrics} - set(history):
            history[key] = {(m.step, m.timestamp, m.value)
                            for m in client.get_metric_history(run_id, key)}
        fresh = [m for m in metrics if (m.step, m.timestamp, m.value) not in history[m.key]]
        client.log_batch(run_id, metrics=fresh,
                         params=[Param(k, v) for k, v in op.get("params", [])],
                         tags=[RunTag(k, v) for k, v in op.get("tags", [])], synchronous=True)
        for m in fresh:
            history[m.key].add((m.step, m.timestamp, m.value))
    elif kind == "artifact":
        for name in op["files"]:
            path = files / name
            if path.is_dir():
                client.log_artifacts(run_id, str(path), op.get("path"))
            else:
                client.log_artifact(run_id, str(path), op.get("path"))
    elif kind == "model":
        _replay_model(run_id, files)
    elif kind == "status":
        client.set_terminated(run_id, op["status"], end_time=op.get("end_time"))
    else:
        raise ValueError(f"unknown kind {kind!r}")


def _replay_model(run_id: str, files: Path) -> None:
    """Log the spooled network as the run's model, as ``tracking.model`` does live."""
    import mlflow
    import numpy

    from scratchlab.nn.persistence import load_network
    from scratchlab.tracking.model import log_pyfunc_model

    net = load_network(files / "network" / "network.npz")
    example = files / "example.npy"
    example = numpy.load(example) if example.exists() else None
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        log_pyfunc_model(net, "model", example)
        return
    with mlflow.start_run(run_id=run_id):  # its final status is the spool's next operation
        log_pyfunc_model(net, "model", example)


def unreachable(spool: Spool, window_s: float) -> TrackingError:
    count = len(spool.pending())
    waited = f" for {window_s:g} s" if window_s else ""
    return TrackingError(
        f"{spool.tracking_uri}: tracking server unreachable{waited}; {count} "
        f"operation{'s' if count != 1 else ''} of run {spool.run_id} kept in {spool.dir}; "
        "upload them with `scratchlab sync` once it is back")


def sync(root: Path | None = None) -> list[tuple[str, int, str]]:
    """``scratchlab sync``: upload every run's spool under ``root``, in order, idempotently.

    Returns (run id, operations sent, note) per run. A spool a live job still holds is left
    to it; a server still away is a TrackingError naming the spool (exit 4).
    """
    import mlflow

    from scratchlab.tracking.outbox import fail_fast_http, is_outage

    fail_fast_http()
    root = root or spool_root()
    done = []
    for directory in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        spool = Spool.open(directory)
        with spool.locked(wait=False) as mine:
            if not mine:
                done.append((spool.run_id, 0, "left to the job still running it"))
                continue
            try:
                sent = spool.replay(mlflow.MlflowClient(spool.tracking_uri))
            except Exception as exc:
                if not is_outage(exc):
                    raise
                raise unreachable(spool, 0) from exc
        spool.remove_if_empty()
        done.append((spool.run_id, sent, f"uploaded to {spool.tracking_uri}"))
    return done
