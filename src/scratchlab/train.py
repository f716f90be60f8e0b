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
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from scratchlab.config import conf_dir, validate
from scratchlab.config.compose import composition_error, composition_errors
from scratchlab.core.entry import EXPECTED, exit_code, report, setup_logging
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


def cli() -> None:
    """``python -m scratchlab.train``: what Hydra refuses before a job runs (an override it
    cannot apply, a config option that does not exist, bad override syntax) is a config
    mistake like the schema's: one line, exit 2, instead of Hydra's own multi-line report; an
    expected error of a Hydra callback (the sweep's MLflow parent) its one line and code."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra raises them to us, unprinted
    try:
        main()
    except EXPECTED as exc:
        setup_logging()
        report(exc)
        sys.exit(exit_code(exc))
    except composition_errors() as exc:
        if _raised_in_a_job(exc):
            raise
        setup_logging()
        error = composition_error(exc)
        report(error)
        sys.exit(exit_code(error))


def _raised_in_a_job(exc: BaseException) -> bool:
    """A ValueError from inside a job is a bug to see whole, not a refused override."""
    if not isinstance(exc, ValueError | TypeError) or isinstance(exc, OmegaConfBaseException):
        return False
    return any(frame.filename == __file__ and frame.name == "main"
               for frame in traceback.extract_tb(exc.__traceback__))


if __name__ == "__main__":
    cli()
