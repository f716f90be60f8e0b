"""What one trial of ``scratchlab tune`` runs: the study's base config with the parameters the
trial drew, as one tracked job, a child run of the study's parent.

A diverged job is data, not a crash: the trial's value is inf (tag ``diverged``). With a pruner,
the job reports ``val_loss`` every epoch and a pruned one raises ``optuna.TrialPruned`` once
its run has ended FINISHED (tags ``pruned``, ``pruned_epoch``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from scratchlab.config import compose, validate
from scratchlab.core.errors import DivergedError
from scratchlab.core.signals import deferred_interrupts
from scratchlab.data.registry import data_config
from scratchlab.pipeline.record import RUN_FILE
from scratchlab.sweeps.parent import SweepInfo, child_tags
from scratchlab.sweeps.pruning import ReportToTrial
from scratchlab.sweeps.space import suggest
from scratchlab.sweeps.trial_attrs import DIVERGED, PRUNED_EPOCH, RUN_ID, RUN_NAME

log = logging.getLogger("scratchlab")


@dataclass
class TrialJob:
    """The objective: ``job(trial)`` trains and evaluates, and returns the final val_loss."""

    overrides: Sequence[str]
    space: Mapping[str, Mapping[str, Any]]
    out_root: Path
    info: SweepInfo
    study_name: str
    worker: str
    prune_from: int | None  # the first epoch the pruner may stop a trial at; None: no pruner

    def __call__(self, trial: optuna.Trial) -> float:
        from scratchlab.pipeline.job import run_config  # the engine: not for `tune --help`

        chosen = suggest(trial, self.space)
        name = f"trial {trial.number}: " + " ".join(chosen)
        out_dir = self.out_root / str(trial.number)
        reporter = None if self.prune_from is None else ReportToTrial(trial, self.prune_from)
        tags = {**child_tags(self.info, trial.number), "entry_point": "optuna",
                "optuna_study": self.study_name, "optuna_worker": self.worker}
        try:
            config = validate(compose([*self.overrides, *chosen]), data=data_config)
            value = run_config(config, out_dir, run_name=name, tags=tags,
                               parent_run_id=self.info.parent_run_id,
                               callbacks=[reporter] if reporter is not None else [])
        except DivergedError as exc:  # divergence is data: the worst value, not a crash
            log.warning("%s", exc)
            trial.set_user_attr(DIVERGED, True)
            return math.inf
        finally:
            _remember_run(trial, out_dir, name)
        if reporter is not None and reporter.pruned_epoch is not None:
            trial.set_user_attr(PRUNED_EPOCH, reporter.pruned_epoch)
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_epoch} "
                                     f"(val_loss {value:.4g})")
        return value


def _remember_run(trial: optuna.Trial, out_dir: Path, name: str) -> None:
    """The trial's MLflow run (``run_job`` writes its id to ``run.json``) as user attributes."""
    try:
        run_id = json.loads((out_dir / RUN_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return  # failed before its run started
    # finished already if another worker took this worker for dead (heartbeats held up)
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError), deferred_interrupts():
        trial.set_user_attr(RUN_ID, run_id)
        trial.set_user_attr(RUN_NAME, name)
