"""Hydra callback making a multirun one MLflow parent run with a child per job.

``on_multirun_start`` runs once in the launching process before any job: it creates the parent
and writes ``sweep.json`` to the sweep dir, where every job (in any launcher worker) finds it.
``on_multirun_end`` compares the children on the parent and ends it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from scratchlab.core.signals import interrupted, sigterm_as_interrupt, stopping
from scratchlab.sweeps.overrides import override_key, swept_keys
from scratchlab.sweeps.parent import (
    COMPARISON_DIR,
    SweepInfo,
    end_parent,
    start_parent,
    write_sweep_info,
)
from scratchlab.tracking.liveness import Heartbeat, end_from_outside

log = logging.getLogger("scratchlab")

# Kept off the callback (launchers pickle it to their workers): the parent's heartbeat thread,
# and SIGTERM/Ctrl-C as KeyboardInterrupt for the whole sweep, so that an interrupt between
# jobs also reaches ``_abandon`` and a second one does not cut it short.
_heartbeats: dict[str, Heartbeat] = {}
_interrupts: dict[str, contextlib.ExitStack] = {}


class MlflowSweepCallback(Callback):
    """``promote``: null, or the registered model name (true: the default name) the best
    child's model goes to with alias champion when the sweep ends (``tracking.registry``)."""

    def __init__(self, objective: str = "val_loss", promote: str | bool | None = None) -> None:
        self.objective = objective
        self.promote = promote
        self.info: SweepInfo | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = config.hydra
        keys = swept_keys(hydra_cfg.overrides.task, hydra_cfg.sweeper.get("params"))
        _check_swept([*keys, *map(override_key, hydra_cfg.overrides.task)])  # fixed ones too
        sweep_dir = Path(hydra_cfg.sweep.dir)
        self.info = start_parent(
            config.tracking,
            keys,
            name="sweep " + " ".join(keys) if keys else "sweep",
            tags={"sweep_dir": str(sweep_dir.resolve()), "entry_point": "hydra-multirun"},
        )
        write_sweep_info(sweep_dir, self.info)
        scope = contextlib.ExitStack()
        scope.enter_context(sigterm_as_interrupt())
        _interrupts[self.info.parent_run_id] = scope
        _heartbeats[self.info.parent_run_id] = Heartbeat(self.info.parent_run_id).__enter__()
        atexit.register(self._abandon)  # a crashed sweep skips on_multirun_end
        log.info("sweep %s: MLflow parent run %s", self.info.sweep_id, self.info.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.info is None:
            return
        info, self.info = self.info, None
        atexit.unregister(self._abandon)
        _stop_heartbeat(info.parent_run_id)
        try:
            self._report(info, Path(config.hydra.sweep.dir))
        finally:
            _interrupts.pop(info.parent_run_id).close()

    def _report(self, info: SweepInfo, sweep_dir: Path) -> None:
        """The comparison on the parent, the refit of a cross-validated best point, the end."""
        # MLflow and matplotlib: imported here, not with the callback, which Hydra also loads
        # for single runs (a bad config is then reported before ~3 s of imports)
        from scratchlab.sweeps.report import parent_status, report_parent

        out_dir = sweep_dir / COMPARISON_DIR
        try:
            comparison = report_parent(info.parent_run_id, out_dir, self.objective)
        except Exception:
            end_parent(info.parent_run_id, "FAILED")
            raise
        best = comparison.best
        champion = best.run_id if best is not None else None
        if best is not None and best.params.get("train.cv_folds", "0") not in ("0", "None"):
            champion = _refit(info.parent_run_id, best, sweep_dir / "refit")
        if self.promote not in (None, False) and champion is not None:
            _promote(champion, self.promote)
        status = parent_status(comparison)
        end_parent(info.parent_run_id, status)
        log.info(
            "sweep %s ended %s: %d runs, best %s (%s=%s); comparison in %s",
            info.sweep_id, status, len(comparison.runs), best.name if best else None,
            self.objective, best.metrics[self.objective] if best else None, out_dir,
        )

    def _abandon(self) -> None:
        """At exit without ``on_multirun_end`` (interrupted, or crashed): end the parent KILLED
        or FAILED, through ``end_from_outside`` with the reason, as any run whose job is gone."""
        if self.info is None:
            return
        from mlflow import MlflowClient

        stopping()  # a late Ctrl-C must not cut this short
        _stop_heartbeat(self.info.parent_run_id)
        status, why = (("KILLED", "the sweep was interrupted") if interrupted() else
                       ("FAILED", "the sweep's process is exiting before the sweep ended"))
        end_from_outside(MlflowClient(), self.info.parent_run_id, status, "scratchlab sweep",
                         why)


def _refit(parent_run_id: str, best: Any, out_dir: Path) -> str | None:
    """Refit the cross-validated best point (its run id); a failed refit is logged, the sweep
    stands."""
    from scratchlab.core.errors import ScratchlabError
    from scratchlab.sweeps.refit import refit_best

    try:
        return refit_best(parent_run_id, best, out_dir)
    except ScratchlabError as exc:
        log.error("refit of %s failed: %s", best.name, exc)
        return None


def _promote(run_id: str, name: str | bool) -> None:
    """The best run's model to the registry (a cross-validated sweep's: its refit's); a failed
    promotion is logged, the sweep stands."""
    from scratchlab.core.errors import ScratchlabError
    from scratchlab.tracking.registry import promote

    try:
        promotion = promote(run_id, name if isinstance(name, str) else None)
    except ScratchlabError as exc:
        log.error("promotion of %s failed: %s", run_id, exc)
        return
    log.info("best run %s promoted: %s (version %s)", run_id, promotion.uri, promotion.version)


def _check_swept(keys: list[str]) -> None:
    """An unknown key, swept or fixed, fails the sweep at once (exit 2), before any run or job
    exists."""
    from scratchlab.core.entry import exit_code, report
    from scratchlab.core.errors import ConfigError
    from scratchlab.sweeps.keys import check_keys

    try:
        check_keys(keys)
    except ConfigError as exc:
        report(exc)
        sys.exit(exit_code(exc))


def _stop_heartbeat(parent_run_id: str) -> None:
    beat = _heartbeats.pop(parent_run_id, None)
    if beat is not None:
        beat.__exit__(None, None, None)
