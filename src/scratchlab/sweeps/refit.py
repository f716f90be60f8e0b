"""The refit of a cross-validated sweep: its best point trained once on all the training data
and scored once on the test split, as ``GridSearchCV(refit=True)`` does.

It runs when the sweep ends, in the process that started it, as a child run of the parent
tagged ``sweep_role=refit`` (left out of the comparison of the points); the parent gets its id
and test metrics.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import yaml
from mlflow import MlflowClient

from scratchlab.config import validate
from scratchlab.data.registry import data_config
from scratchlab.pipeline.crossval import refit_config, refit_splits
from scratchlab.pipeline.job import run_job
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.sweeps.parent import ROLE_REFIT, TAG_ROLE, TAG_SWEEP_ID
from scratchlab.sweeps.summaries import RunSummary

log = logging.getLogger("scratchlab")


def refit_best(parent_run_id: str, best: RunSummary, out_dir: Path) -> str:
    """Train ``best``'s config (from its logged ``config.yaml``) on train+val, test it; return
    the refit's run id."""
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        logged = yaml.safe_load(Path(client.download_artifacts(best.run_id, "config.yaml",
                                                               tmp)).read_text())
    config = refit_config(validate(logged, data=data_config))
    splits, manifest = prepare_data(config)
    sweep_id = client.get_run(parent_run_id).data.tags.get(TAG_SWEEP_ID, "")
    tags = {TAG_ROLE: ROLE_REFIT, TAG_SWEEP_ID: sweep_id, "refit_of": best.run_id,
            "entry_point": "hydra-multirun"}
    run_job(config, refit_splits(splits), manifest, out_dir, run_name=f"refit: {best.name}",
            tags=tags, parent_run_id=parent_run_id)
    refit = json.loads((out_dir / "run.json").read_text())["run_id"]
    metrics = client.get_run(refit).data.metrics
    client.set_tag(parent_run_id, "refit_run_id", refit)
    for key in ("test_accuracy", "test_loss", "test_macro_f1", "test_r2"):
        if key in metrics:
            client.log_metric(parent_run_id, f"refit_{key}", metrics[key])
    log.info("refit of %s on all the training data: %s", best.name,
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test_")))
    return refit
