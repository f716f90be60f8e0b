"""``scratchlab sync``: upload what runs spooled while their tracking server was unreachable."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from scratchlab.core.errors import ScratchlabError, TrackingError
from scratchlab.tracking.http import fail_fast_http, is_outage
from scratchlab.tracking.model import log_spooled_model
from scratchlab.tracking.spool import Spool, spool_root, unreachable
from scratchlab.tracking.store import first_line


def sync(root: Path | None = None) -> list[tuple[str, int, str]]:
    """Upload every run's spool under ``root``, in order, idempotently, each to its own server
    (never the default store: nothing is written where the command runs).

    Returns (run id, operations sent, note) per run. A spool a live job still holds is left
    to it; a server still away is a TrackingError naming the spool (exit 4), as is a server
    that refuses an operation (the run deleted there, say). Stopped at any point (Ctrl-C, a
    kill), the next sync sends the rest, each metric and the model once.
    """
    import mlflow
    from filelock import Timeout

    fail_fast_http()
    root = root or spool_root()
    done = []
    for directory in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        spool = Spool.open(directory)
        lock = spool.lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            done.append((spool.run_id, 0, "left to the job still running it"))
            continue
        try:
            client = mlflow.MlflowClient(spool.tracking_uri)
            sent = spool.replay(client, partial(log_spooled_model, spool.run_id,
                                                spool.tracking_uri))
        except ScratchlabError:
            raise
        except Exception as exc:
            if is_outage(exc):
                raise unreachable(spool, 0) from exc
            raise TrackingError(f"{spool.tracking_uri}: run {spool.run_id} refused the spooled "
                                f"operation {spool.pending()[0].name} ({first_line(exc)}); "
                                f"kept in {spool.dir}") from exc
        finally:
            lock.release()
        spool.remove_if_empty()
        done.append((spool.run_id, sent, f"uploaded to {spool.tracking_uri}"))
    return done
