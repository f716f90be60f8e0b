"""The Hydra app: ``python -m scratchlab.train [overrides] [-m for sweeps]``.

It composes ``conf/`` itself (DVC stages read ``params.yaml`` instead) and runs the same job as
the pipeline, writing each job's reports and weights to its Hydra output directory. Returns
the final validation loss, the objective sweepers minimise.

In a multirun each job is a child of the sweep's MLflow parent run (created by
``scratchlab.sweeps.callback``, configured in ``conf/hydra/default.yaml``). A job that diverges
or fails with an expected error returns inf instead of exiting, so the sweep goes on; its run
ends FAILED and shows up in the sweep's comparison.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from scratchlab.config import conf_dir, validate
from scratchlab.core.entry import EXPECTED, exit_code, report
from scratchlab.core.errors import ScratchlabError
from scratchlab.data.registry import data_config
from scratchlab.sweeps.membership import sweep_membership
from scratchlab.tracking.store import check_store
from scratchlab.tracking.uri import tracking_uri


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    try:
        job = sweep_membership(hydra_cfg)
        # What can fail in seconds fails first, before the data, the training and the imports
        # of MLflow and matplotlib: the config values, the tracking store.
        config = validate(cfg, data=data_config)
        check_store(tracking_uri(config.tracking.uri))
        from scratchlab.pipeline.job import run_config

        return run_config(config, Path(hydra_cfg.runtime.output_dir), run_name=job.run_name,
                          tags=job.tags, parent_run_id=job.parent_run_id)
    except EXPECTED as exc:
        report(exc)
        if hydra_cfg.mode == RunMode.MULTIRUN and isinstance(exc, ScratchlabError):
            return math.inf  # in a sweep a failed job is data: recorded, and the others run
        sys.exit(exit_code(exc))


if __name__ == "__main__":
    main()
