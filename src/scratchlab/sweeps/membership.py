"""How one Hydra job files its MLflow run: standalone, or as a child of its sweep's parent."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from scratchlab.sweeps.overrides import job_run_name
from scratchlab.sweeps.parent import child_tags, read_sweep_info

log = logging.getLogger("scratchlab")


@dataclass
class Membership:
    run_name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def sweep_membership(hydra_cfg: DictConfig | None = None) -> Membership:
    """In a multirun: named by the swept values, tagged with sweep id and job number."""
    hydra_cfg = hydra_cfg or HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return Membership(tags={"entry_point": "hydra"})
    info = read_sweep_info(Path(hydra_cfg.sweep.dir))
    tags = {"entry_point": "hydra-multirun"}
    if info is None:
        log.warning("%s: no sweep.json (sweep callback not configured); run has no parent",
                    hydra_cfg.sweep.dir)
        return Membership(tags=tags)
    return Membership(
        run_name=job_run_name(hydra_cfg.overrides.task, info.swept_keys),
        parent_run_id=info.parent_run_id,
        tags={**tags, **child_tags(info, int(hydra_cfg.job.num))},
    )
