"""``scratchlab tune``: an Optuna study driving the same jobs as the Hydra app.

One study can be worked on by any number of ``scratchlab tune`` processes, on one machine or
many, all started with the same command: ``--trials N`` is the study's total, and each worker
takes trials until the study has N. Running the command again later resumes the study (up to a
larger N) with the same numbering. The parts, each in its module:

- ``storage``: the study's Optuna storage (SQL or journal file) and its trial heartbeats;
- ``locks``: one lock per study, across machines, for what must happen once;
- ``budget``: the study's total, counted the same by every worker;
- ``seeds``: a random stream per trial, so workers never draw the same parameters;
- ``pruning``: the pruner, and the callback through which a trial reports every epoch;
- ``worker``: ask, run, tell, with interrupts held around the storage writes;
- ``retries``: a dead worker's or an interrupted trial queued again with the same parameters;
- ``orphans``: the MLflow runs of dead workers ended;
- ``study_parent``: the study as one MLflow parent run, with a child run per trial.

hydra-optuna-sweeper is not used: it pins optuna 2.10, whose SQLite storage fails under the
SQLAlchemy 2 that MLflow needs, and it cannot prune (hydra issues #1710, #1954).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from scratchlab.config import compose, validate
from scratchlab.core.errors import ConfigError
from scratchlab.core.paths import project_root
from scratchlab.core.signals import (
    deferred_interrupts,
    interrupt_mark,
    interrupted_since,
    stopping,
)
from scratchlab.data.registry import data_config
from scratchlab.pipeline.record import open_store
from scratchlab.sweeps.budget import budget, tally
from scratchlab.sweeps.locks import storage_lock
from scratchlab.sweeps.orphans import end_orphans
from scratchlab.sweeps.parent import COMPARISON_DIR, SweepInfo
from scratchlab.sweeps.pruning import first_prunable_epoch, load_pruning, make_pruner
from scratchlab.sweeps.retries import RETRIES, Retries
from scratchlab.sweeps.seeds import TrialSeededSampler
from scratchlab.sweeps.space import default_space_path, load_space, read_study_file
from scratchlab.sweeps.storage import TRIAL_HEARTBEAT_S, open_storage, storage_url
from scratchlab.sweeps.study_parent import best_trial, finish, open_parent
from scratchlab.sweeps.trial_attrs import RUN_ID
from scratchlab.sweeps.trial_job import TrialJob
from scratchlab.sweeps.worker import Worker, worker_id
from scratchlab.tracking.liveness import Heartbeat
from scratchlab.tracking.uri import redact, sqlite_path, tracking_uri

log = logging.getLogger("scratchlab")


@dataclass
class TuneResult:
    """What one worker saw: the study, how many trials it ran itself, the best so far."""

    study: optuna.Study
    ran: int
    best: FrozenTrial | None
    parent_run_id: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def best_run_id(self) -> str | None:
        """The best trial's MLflow run: what promoting the study's best model would register."""
        return None if self.best is None else self.best.user_attrs.get(RUN_ID)


def default_storage_dir(uri: str) -> Path:
    """Beside a SQLite MLflow store, else the project's ``mlruns/``."""
    db = sqlite_path(uri)
    return db.parent if db is not None else project_root() / "mlruns"


def tune(
    study_name: str,
    trials: int,
    overrides: Sequence[str] = (),
    space_path: Path | None = None,
    out_root: Path | None = None,
    storage: str | None = None,
    heartbeat_s: int = TRIAL_HEARTBEAT_S,
    retries: int = RETRIES,
    pruner: str | None = None,
) -> TuneResult:
    """Work on ``study_name`` until it has ``trials`` trials; report it on its parent run.
    ``pruner`` (``--pruner``) replaces the search-space file's choice."""
    for flag, value, low in (("--trials", trials, 1), ("--heartbeat", heartbeat_s, 0),
                             ("--retries", retries, 0)):
        if value < low:
            raise ConfigError(f"{flag} {value}: expected an integer >= {low}")
    space_path = space_path or default_space_path()
    study_file = read_study_file(space_path)
    space = load_space(space_path, study_file)
    pruning = load_pruning(study_file, space_path, pruner)
    base = validate(compose(overrides), data=data_config)
    if pruning.enabled and base.train.cv_folds:
        raise ConfigError(f"pruner {pruning.pruner} with train.cv_folds={base.train.cv_folds}: "
                          "a cross-validated trial has no per-epoch loss to prune on; use "
                          "--pruner none")
    open_store(base)
    url = storage_url(storage, default_storage_dir(tracking_uri(base.tracking.uri)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lock_key = f"scratchlab.tune:{study_name}"
    out_root = out_root or project_root() / "multirun" / "optuna" / study_name
    requeue = Retries(retries)
    info: SweepInfo | None = None
    mark = interrupt_mark()
    try:
        with storage_lock(url, lock_key):  # schema, study and parent: created exactly once
            opened = open_storage(url, heartbeat_s, requeue)
            study = optuna.create_study(
                storage=opened, study_name=study_name, direction="minimize",
                load_if_exists=True, sampler=TrialSeededSampler(int(base.train.seed)),
                pruner=make_pruner(pruning, int(base.train.epochs)),
            )
            with deferred_interrupts():  # a parent that exists is a parent that gets ended
                info = open_parent(study, base.plain["tracking"], list(space), url)
        parent = info

        def orphans(*_: object) -> None:
            end_orphans(parent.parent_run_id, parent.experiment_id,
                        study.get_trials(deepcopy=False))

        requeue.on_stale = orphans
        orphans()  # runs left RUNNING by a worker that died before this one started
        name = worker_id()
        job = TrialJob(overrides, space, out_root, parent, study_name, name,
                       first_prunable_epoch(pruning) if pruning.enabled else None)
        worker = Worker(study, opened, trials, job, requeue, parent.parent_run_id, name)
        log.info("study %s on %s: worker %s, MLflow parent %s, pruner %s, %d of %d trials done",
                 study_name, redact(url), name, parent.parent_run_id, pruning.pruner,
                 budget(study.get_trials(deepcopy=False)).done, trials)
        with Heartbeat(parent.parent_run_id):  # this worker keeps the parent alive meanwhile
            ran = worker.work()
        finish(study, parent, out_root / COMPARISON_DIR, "FINISHED", url, lock_key)
    except BaseException as exc:
        if info is not None:
            error = interrupted_since(mark, exc)  # an interrupt a library reported as its own
            killed = isinstance(error, KeyboardInterrupt)
            if killed:
                stopping()  # a second Ctrl-C must not stop the parent from ending KILLED
            try:
                finish(study, info, out_root / COMPARISON_DIR, "KILLED" if killed else "FAILED",
                       url, lock_key)
            except Exception:  # keep the original error the one reported
                log.exception("study %s: could not end the parent run", study_name)
        raise
    final = study.get_trials(deepcopy=False)
    return TuneResult(study, ran, best_trial(final), parent.parent_run_id, tally(final))
