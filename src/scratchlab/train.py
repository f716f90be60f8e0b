"""The Hydra app: ``python -m scratchlab.train [overrides] [-m for sweeps]``.

It composes ``conf/`` itself (DVC stages read ``params.yaml`` instead) and runs the same
``train``/``evaluate`` functions as the pipeline, writing each job's reports and weights to its
Hydra output directory. Returns the final validation loss, the objective sweepers minimise.

In a multirun each job is a child of the sweep's MLflow parent run (created by
``scratchlab.sweeps.callback``, configured in ``conf/hydra/default.yaml``). A job that diverges
or fails with an expected error returns inf instead of exiting, so the sweep goes on; its run
ends FAILED and shows up in the sweep's comparison.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from scratchlab.cli_support import INTERRUPTED_EXIT
from scratchlab.config import conf_dir, validate
from scratchlab.errors import DivergedError, ScratchlabError
from scratchlab.sweeps.job import job_run
from scratchlab.tracking.store import check_store, tracking_uri

log = logging.getLogger("scratchlab")


def run_job(
    cfg: DictConfig,
    out_dir: Path,
    run_name: str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> float:
    """Prepare data, train and evaluate one configuration; return its final validation loss."""
    # What can fail in seconds fails first, before minutes of data and training and before the
    # ~3 s it takes to import MLflow and scikit-learn: the config values, the tracking store.
    validate(cfg)
    check_store(tracking_uri(cfg["tracking"]["uri"]))
    from scratchlab.experiment import evaluate, prepare_data, train

    splits, manifest = prepare_data(cfg)
    result = train(cfg, splits, manifest, out_dir, run_name=run_name,
                   tags=tags or {"entry_point": "hydra"}, parent_run_id=parent_run_id)
    evaluate(cfg, result.net, splits, out_dir, result.run_id)
    return float(result.history.history["val_loss"][-1])


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        job = job_run(hydra_cfg)
        return run_job(cfg, Path(hydra_cfg.runtime.output_dir), job.run_name, tags=job.tags,
                       parent_run_id=job.parent_run_id)
    except ScratchlabError as exc:
        if not multirun:
            log.error("%s", exc)
            sys.exit(exc.exit_code)
        # in a sweep a failed job is data: record it and let the other jobs run
        (log.warning if isinstance(exc, DivergedError) else log.error)("%s", exc)
        return math.inf
    except KeyboardInterrupt:
        log.error("interrupted; the MLflow run ended KILLED")
        sys.exit(INTERRUPTED_EXIT)


if __name__ == "__main__":
    main()
