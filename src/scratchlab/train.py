"""The Hydra app: ``python -m scratchlab.train [overrides] [-m for sweeps]``.

It composes ``conf/`` itself (DVC stages read ``params.yaml`` instead) and runs the same
``train``/``evaluate`` functions as the pipeline, writing each job's reports and weights to its
Hydra output directory. Returns the final validation loss, the objective sweepers minimise.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from scratchlab.config import conf_dir, validate
from scratchlab.errors import DivergedError, ScratchlabError
from scratchlab.experiment import evaluate, prepare_data, train

log = logging.getLogger("scratchlab")


def run_job(cfg: DictConfig, out_dir: Path, run_name: str | None = None) -> float:
    """Prepare data, train and evaluate one configuration; return its final validation loss."""
    validate(cfg)
    splits, manifest = prepare_data(cfg)
    result = train(cfg, splits, manifest, out_dir, run_name=run_name,
                   tags={"entry_point": "hydra"})
    evaluate(cfg, result.net, splits, out_dir, result.run_id)
    return float(result.history.history["val_loss"][-1])


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return run_job(cfg, Path(hydra_cfg.runtime.output_dir))
    except DivergedError as exc:
        log.warning("%s", exc)
        if multirun:  # divergence is data in a sweep: record it and let the other jobs run
            return math.inf
        sys.exit(exc.exit_code)
    except ScratchlabError as exc:
        log.error("%s", exc)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
