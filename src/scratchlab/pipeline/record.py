"""The MLflow run of a config: opened with its params and tags, reopened, and told how
training went (history, figure, tags, weights). Used by the DVC stages and by ``job``.

DVC runs training and evaluation as two processes: ``train`` opens the run
(:func:`tracked_run`) and records its id in ``run.json``; ``evaluate`` reopens it
(:func:`resumed_run`). Nothing here imports the trainer or the evaluation code, so each
DVC stage depends only on the code it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from scratchlab.config import Config
from scratchlab.core.errors import DataError, DivergedError
from scratchlab.core.files import read_json, write_json_atomic, write_text_atomic
from scratchlab.core.numerics import numeric_environment
from scratchlab.core.paths import git_commit
from scratchlab.nn.callbacks import History
from scratchlab.nn.network import Network
from scratchlab.nn.persistence import save_network
from scratchlab.spec.splits import Splits
from scratchlab.tracking.lineage import dataset_input
from scratchlab.tracking.liveness import reap_once
from scratchlab.tracking.recorder import RunRecorder
from scratchlab.tracking.run import ended_run
from scratchlab.tracking.store import connect
from scratchlab.tracking.uri import tracking_uri

RUN_FILE = "run.json"


def title(config: Config) -> str:
    return (f"{config.data.name} | {config.model.name} | {config.optimizer.name} "
            f"lr={config.optimizer.hyper['lr']}")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The sha256 of the raw files the manifest lists (names and their sha256s)."""
    files = manifest.get("files", {})
    return hashlib.sha256(
        "".join(f"{name}:{info['sha256']};" for name, info in sorted(files.items())).encode()
    ).hexdigest()


def dataset_tags(config: Config, manifest: Mapping[str, Any]) -> dict[str, str]:
    return {"dataset": config.data.name, "dataset_sha256": manifest_digest(manifest),
            "seed": str(config.train.seed), "git_commit": git_commit(),
            **numeric_environment(config.train.deterministic)}


def experiment_tags() -> dict[str, str]:
    """The DVC experiment running this stage, if any (``dvc exp run`` names it in the stage's
    environment): tag ``dvc.exp`` and its baseline commit, so a row of ``dvc exp show`` and
    its MLflow run find each other."""
    name = os.environ.get("DVC_EXP_NAME")
    if not name:
        return {}
    return {"dvc.exp": name, "dvc.exp.baseline": os.environ.get("DVC_EXP_BASELINE_REV", "")}


def open_store(config: Config) -> str:
    """Connect to the config's store (its experiment id) and, the first time this process does,
    end the runs there whose owner process is gone (``tracking.liveness``)."""
    experiment_id = connect(config.tracking.uri, config.tracking.experiment)
    reap_once(tracking_uri(config.tracking.uri), config.tracking.stale_after_s)
    return experiment_id


@contextlib.contextmanager
def tracked_run(config: Config, manifest: Mapping[str, Any], out_dir: Path, *, splits: Splits,
                run_name: str | None = None, tags: Mapping[str, str] | None = None,
                parent_run_id: str | None = None) -> Iterator[RunRecorder]:
    """A new run holding the config, the data manifest and the tags, and the data as its dataset
    input (``tracking.lineage``, schema from ``splits.train``); its id in ``run.json``. Under
    ``dvc exp run`` it is named after the DVC experiment unless a name is given."""
    experiment_id = open_store(config)
    dvc_tags = experiment_tags()
    run_name = run_name or config.tracking.run_name or dvc_tags.get("dvc.exp")
    with ended_run(experiment_id=experiment_id, run_name=run_name,
                   tags={**dataset_tags(config, manifest), **dvc_tags, **(tags or {})},
                   parent_run_id=parent_run_id) as run:
        recorder = RunRecorder(run.info.run_id, config.tracking.retry_window_s)
        write_json_atomic(out_dir / RUN_FILE, {"run_id": recorder.run_id})
        recorder.log_params(config.plain)
        recorder.log_dict(config.plain, "config.yaml")
        recorder.log_dict(dict(manifest), "data/manifest.json")
        recorder.log_input(dataset_input(config.data.name, manifest_digest(manifest),
                                         manifest.get("source", {}), splits.train.X,
                                         splits.train.Y))
        try:
            yield recorder
        except BaseException:  # send the epochs still pending, yet report the original error
            with contextlib.suppress(Exception):
                recorder.flush()
            raise
        recorder.flush()


@contextlib.contextmanager
def resumed_run(config: Config, run_id: str) -> Iterator[RunRecorder]:
    """The run training started, reopened to add evaluation, ended again however this goes."""
    open_store(config)
    with ended_run(run_id=run_id):
        yield RunRecorder(run_id, config.tracking.retry_window_s)


def record_training(recorder: RunRecorder, config: Config, net: Network, history: History,
                    out_dir: Path) -> None:
    """History files and figure, how training ended (tags), and the weights; a diverged run
    raises :class:`DivergedError` (its run then ends FAILED, tagged ``diverged``)."""
    from scratchlab.pipeline import plots

    _write_history(history.history, history.epochs_run, out_dir)
    recorder.log_artifacts([out_dir / "history.json"])
    recorder.log_figure(plots.history_figure(history.history, title(config)), "history.png")
    best = history.best_epoch
    recorder.set_tags({"epochs_run": history.epochs_run,
                       "best_epoch": None if best is None else best + 1})
    if history.diverged:
        epoch = history.diverged_epoch + 1  # 1-based, like the logged metric steps
        recorder.set_tags({"diverged": "true", "diverged_epoch": epoch})
        raise DivergedError(
            f"optimizer.lr={config.optimizer.hyper['lr']}: loss diverged at epoch {epoch}; "
            f"MLflow run {recorder.run_id} marked FAILED (tag diverged)"
        )
    recorder.set_tags({"diverged": "false"})
    save_network(net, out_dir / "model.npz")
    recorder.log_artifacts([out_dir / "model.npz", out_dir / "model.json"], "weights")


def _write_history(history: dict[str, list[float]], epochs: int, out_dir: Path) -> None:
    """``history.json`` for MLflow and ``history.csv`` (one row per epoch) for ``dvc plots``."""
    write_json_atomic(out_dir / "history.json", history)
    keys = list(history)
    rows = ["epoch," + ",".join(keys)]
    rows += [f"{e + 1}," + ",".join(repr(history[k][e]) for k in keys) for e in range(epochs)]
    write_text_atomic(out_dir / "history.csv", "\n".join(rows) + "\n")


def load_run_id(path: Path) -> str:
    """The MLflow run id ``run.json`` hands from the train stage to evaluate."""
    run = read_json(path)
    run_id = run.get("run_id") if isinstance(run, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise DataError(f"{path}: expected {{\"run_id\": \"...\"}} (rebuild it with "
                        "`dvc repro`)")
    return run_id
