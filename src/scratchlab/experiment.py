"""The jobs every entry point shares: prepare data, ``train(cfg)`` and ``evaluate``.

DVC stages call them with ``params.yaml``; the Hydra app (``python -m scratchlab.train``) calls
them with a config it composed itself. Neither reads ``conf/`` or the working directory behind
the caller's back, so both give the same result for the same config.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from scratchlab import plots
from scratchlab.config import validate, validate_batch_size
from scratchlab.data.datasets import fetch_dataset, load_dataset
from scratchlab.errors import DivergedError
from scratchlab.io import write_json_atomic, write_text_atomic
from scratchlab.metrics import classification_metrics, regression_metrics
from scratchlab.nn.network import Network, NetworkSpec, build_network
from scratchlab.nn.optimizers import make_optimizer
from scratchlab.nn.persistence import save_network
from scratchlab.nn.training import EarlyStopping, History, fit
from scratchlab.paths import git_commit, project_root
from scratchlab.preprocess import Splits, preprocess
from scratchlab.signals import deferred_interrupts
from scratchlab.tracking.run import ended_run, loggable_params
from scratchlab.tracking.store import connect

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run leaves behind for evaluation and for sweeps."""

    run_id: str
    net: Network
    history: History


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def data_fingerprint(data_cfg: Mapping[str, Any]) -> str:
    """A short hash naming a data config, so the Hydra app caches each dataset once."""
    blob = json.dumps(_plain(data_cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def prepare_data(cfg: Mapping[str, Any], raw_dir: Path | None = None) -> tuple[Splits, dict]:
    """Fetch (cached under ``data/cache``) and preprocess in memory: the Hydra app's data path."""
    data_cfg = cfg["data"]
    if raw_dir is None:
        name = f"{data_cfg['name']}-{data_fingerprint(data_cfg)}"
        raw_dir = project_root() / "data" / "cache" / name
    manifest = fetch_dataset(data_cfg, raw_dir, progress=bool(cfg["train"]["progress"]))
    raw = load_dataset(data_cfg, raw_dir)
    return preprocess(raw, data_cfg, float(cfg["train"]["val_fraction"])), manifest


def network_spec(cfg: Mapping[str, Any], splits: Splits) -> NetworkSpec:
    """The configured network (``model.*``) sized for ``splits``."""
    return NetworkSpec.from_dict(
        _plain(cfg["model"]), input_dim=splits.input_dim, output_dim=splits.output_dim
    )


def dataset_tags(cfg: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, str]:
    files = manifest.get("files", {})
    digest = hashlib.sha256(
        "".join(f"{name}:{info['sha256']};" for name, info in sorted(files.items())).encode()
    ).hexdigest()
    return {
        "dataset": str(cfg["data"]["name"]),
        "dataset_sha256": digest,
        "seed": str(cfg["train"]["seed"]),
        "git_commit": git_commit(),
    }


def _early_stopping(cfg: Mapping[str, Any]) -> EarlyStopping | None:
    es = cfg["train"]["early_stopping"]
    if not es["enabled"]:
        return None
    return EarlyStopping(
        monitor=es["monitor"],
        patience=int(es["patience"]),
        min_delta=float(es["min_delta"]),
        restore_best=bool(es["restore_best"]),
    )


class EpochLogger:
    """Sends each epoch's metrics to MLflow in one call (never per batch: ~20 ms each on SQLite)."""

    def __init__(self, run_id: str) -> None:
        self.client = mlflow.MlflowClient()
        self.run_id = run_id

    def __call__(self, epoch: int, logs: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = mlflow.utils.time.get_current_time_millis()
        metrics = [Metric(k, float(v), now, epoch + 1) for k, v in logs.items()]
        with deferred_interrupts():
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)


def train(
    cfg: Mapping[str, Any],
    splits: Splits,
    manifest: Mapping[str, Any],
    out_dir: Path,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> TrainResult:
    """Train the configured network on ``splits`` and record everything in one MLflow run.

    Writes ``model.npz``/``model.json``, ``history.json``/``history.csv`` and ``run.json``
    (the run id, so evaluation lands in the same run) to ``out_dir``. A diverged run is
    recorded (tag ``diverged``, status FAILED) and raises :class:`DivergedError`.
    """
    validate(cfg)
    validate_batch_size(cfg, len(splits.train))
    experiment_id = connect(cfg["tracking"]["uri"], cfg["tracking"]["experiment"])
    rng = np.random.default_rng(int(cfg["train"]["seed"]))
    spec = network_spec(cfg, splits)
    net = build_network(spec, rng)
    optimizer = make_optimizer(**_plain(cfg["optimizer"]))
    run_tags = {**dataset_tags(cfg, manifest), **(tags or {})}
    with ended_run(
        experiment_id=experiment_id,
        run_name=run_name or cfg["tracking"]["run_name"],
        tags=run_tags,
        parent_run_id=parent_run_id,
    ) as run:
        run_id = run.info.run_id
        write_json_atomic(out_dir / "run.json", {"run_id": run_id})
        mlflow.log_params(loggable_params(_plain(cfg)))
        mlflow.log_dict(_plain(cfg), "config.yaml")
        mlflow.log_dict(dict(manifest), "data/manifest.json")
        train_cfg = cfg["train"]
        history = fit(
            net,
            optimizer,
            splits.train.X,
            splits.train.Y,
            epochs=int(train_cfg["epochs"]),
            batch_size=int(train_cfg["batch_size"]),
            rng=rng,
            validation_data=(splits.val.X, splits.val.Y),
            early_stopping=_early_stopping(cfg),
            on_epoch_end=EpochLogger(run_id),
            divergence_factor=float(train_cfg["divergence_factor"]),
            progress=bool(train_cfg["progress"]),
        )
        _write_history(history, out_dir)
        mlflow.log_artifact(str(out_dir / "history.json"))
        mlflow.log_figure(plots.history_figure(history.history, _title(cfg)), "history.png")
        best = history.best_epoch
        mlflow.set_tags(
            {"epochs_run": history.epochs_run, "best_epoch": None if best is None else best + 1}
        )
        if history.diverged:
            epoch = history.diverged_epoch + 1  # 1-based, like the logged metric steps
            mlflow.set_tags({"diverged": "true", "diverged_epoch": epoch})
            raise DivergedError(
                f"optimizer.lr={cfg['optimizer']['lr']}: loss diverged at epoch {epoch}; "
                f"MLflow run {run_id} marked FAILED (tag diverged)"
            )
        mlflow.set_tag("diverged", "false")
        save_network(net, out_dir / "model.npz")
        mlflow.log_artifact(str(out_dir / "model.npz"), "weights")
        mlflow.log_artifact(str(out_dir / "model.json"), "weights")
    return TrainResult(run_id=run_id, net=net, history=history)


def _title(cfg: Mapping[str, Any]) -> str:
    model, opt = cfg["model"], cfg["optimizer"]
    return f"{cfg['data']['name']} | {model['name']} | {opt['name']} lr={opt['lr']}"


def _write_history(history: History, out_dir: Path) -> None:
    """``history.json`` for MLflow and ``history.csv`` (one row per epoch) for ``dvc plots``."""
    write_json_atomic(out_dir / "history.json", history.history)
    keys = list(history.history)
    rows = ["epoch," + ",".join(keys)]
    for epoch in range(history.epochs_run):
        rows.append(f"{epoch + 1}," + ",".join(repr(history.history[k][epoch]) for k in keys))
    write_text_atomic(out_dir / "history.csv", "\n".join(rows) + "\n")


def evaluate(
    cfg: Mapping[str, Any],
    net: Network,
    splits: Splits,
    out_dir: Path,
    run_id: str | None,
    metrics_path: Path | None = None,
) -> dict[str, float]:
    """Score the test split, write reports to ``out_dir`` and add them to the training run.

    ``metrics.json`` goes to ``metrics_path`` (default ``out_dir``): DVC tracks it apart from
    the other reports as an uncached metrics file.
    """
    test = splits.test
    predicted = net.predict(test.X)
    if splits.task == "classification":
        metrics, files, figure = classification_metrics(
            test.y, predicted, splits.class_names, _title(cfg)
        )
    else:
        metrics, files, figure = regression_metrics(test.y, predicted, _title(cfg))
    metrics_path = metrics_path or out_dir / "metrics.json"
    write_json_atomic(metrics_path, metrics)
    for name, content in files.items():
        if isinstance(content, str):
            write_text_atomic(out_dir / name, content)
        else:
            write_json_atomic(out_dir / name, content)
    figure_name = "confusion_matrix.png" if splits.task == "classification" else "predictions.png"
    plots.save_figure(figure, out_dir / figure_name)
    if run_id is not None:
        connect(cfg["tracking"]["uri"], cfg["tracking"]["experiment"])
        with ended_run(run_id=run_id):
            mlflow.log_metrics(metrics)
            for path in [*(out_dir / name for name in [*files, figure_name]), metrics_path]:
                mlflow.log_artifact(str(path), "evaluation")
            if cfg["tracking"]["log_model"]:
                from scratchlab.nn.pyfunc import log_pyfunc_model

                log_pyfunc_model(net, name="model", input_example=test.X[:5])
    log.info("test metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics
