"""The end of a cross-validated sweep: its best point refit and tested once.

As ``GridSearchCV(refit=True)``: once every point is scored by k-fold cross-validation (on the
training split only), the point with the lowest mean fold objective is trained again on the
whole training split, with the config its child logged (``train.cv_folds`` set to null), and
evaluated on the test split, once. The refit is a run of its own under the sweep's parent,
tagged ``refit=true``, ``sweep_role=refit`` and ``refit_of=<best child>``; the parent links it
(tag ``refit_run_id``) and carries its test metrics as ``refit_test_*``. Sweeps without
cross-validation test every child already, and are not refit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.utils.time import get_current_time_millis

from scratchlab.config import validate
from scratchlab.data.registry import data_config
from scratchlab.io import read_json
from scratchlab.runs import RUN_FILE
from scratchlab.sweeps.parent import TAG_ROLE, TAG_SWEEP_ID, SweepInfo
from scratchlab.sweeps.summaries import RunSummary
from scratchlab.tracking.retry import with_retry

TAG_REFIT = "refit_run_id"


def cross_validated(run: RunSummary | None) -> bool:
    return run is not None and run.params.get("train.cv_folds") not in (None, "None")


def refit_best(info: SweepInfo, best: RunSummary | None, out_dir: Path) -> str | None:
    """Refit ``best`` (a cross-validated child) into ``out_dir``; its run id, or None when the
    sweep was not cross-validated or had no best point."""
    if not cross_validated(best):
        return None
    from scratchlab.job import run_config  # training: only when there is something to refit

    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        logged = client.download_artifacts(best.run_id, "config.yaml", tmp)
        plain = yaml.safe_load(Path(logged).read_text())
    plain["train"]["cv_folds"] = None
    config = validate(plain, data=data_config)
    tags = {TAG_SWEEP_ID: info.sweep_id, TAG_ROLE: "refit", "refit": "true",
            "refit_of": best.run_id, "entry_point": "hydra-multirun"}
    run_config(config, out_dir, run_name=f"refit {best.name}", tags=tags,
               parent_run_id=info.parent_run_id)
    refit_id = read_json(out_dir / RUN_FILE)["run_id"]
    tested = client.get_run(refit_id).data.metrics
    now = get_current_time_millis()
    metrics = [Metric(f"refit_{k}", v, now, 0) for k, v in tested.items() if k.startswith("test_")]
    with_retry(lambda: client.log_batch(info.parent_run_id, metrics=metrics,
                                        tags=[RunTag(TAG_REFIT, refit_id)]), "link refit run")
    return refit_id
