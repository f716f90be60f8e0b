"""``scratchlab tune``: an Optuna study driving the same jobs as the Hydra app.

One study can be worked on by any number of ``scratchlab tune`` processes, on one machine or
many, all started with the same command: ``--trials N`` is the study's total, and each worker
takes trials until the study has N (see :mod:`scratchlab.sweeps.study` for how the count, the
seeds, the lock and worker failures work). Running the command again later resumes the study
(up to a larger N) with the same numbering.

The study is one MLflow parent run, created once under the storage lock and remembered in the
study's user attributes, with a child run per trial; the parent carries the best trial so far
(tags and ``best_*`` metrics: MLflow params are write-once) and, once no trial is left running,
the comparison figure and table. hydra-optuna-sweeper is not used: it pins optuna 2.10, whose
SQLite storage fails under the SQLAlchemy 2 that MLflow needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from scratchlab.config import compose, validate
from scratchlab.core.errors import ConfigError, DivergedError, ScratchlabError
from scratchlab.core.owner import owner_tags
from scratchlab.core.paths import project_root
from scratchlab.core.signals import deferred_interrupts
from scratchlab.data.registry import data_config
from scratchlab.pipeline.record import open_store
from scratchlab.sweeps.parent import SweepInfo, child_tags, end_parent, start_parent
from scratchlab.sweeps.report import parent_status, report_parent
from scratchlab.sweeps.space import default_space_path, load_space, suggest
from scratchlab.sweeps.study import (
    DIVERGED_ATTR,
    RUN_ID_ATTR,
    RUN_NAME_ATTR,
    WORKER_ATTR,
    StaleTrials,
    TrialSeededSampler,
    best_trial,
    budget,
    end_orphans,
    fail_stale,
    has_heartbeat,
    heartbeat,
    log_best,
    open_storage,
    over_budget,
    redact,
    skip,
    storage_lock,
    storage_url,
    summary,
    worker_id,
)
from scratchlab.tracking.liveness import Heartbeat
from scratchlab.tracking.store import busy_retry
from scratchlab.tracking.uri import sqlite_path, tracking_uri

log = logging.getLogger("scratchlab")

PARENT_ATTR = "mlflow_parent_run_id"
HEARTBEAT_S = 10
RETRIES = 1
WAIT_POLL_S = 0.5  # an idle worker re-reads the study: cheap, and it picks up a retry at once


@dataclass
class TuneResult:
    """What one worker saw: the study, how many trials it ran itself, the best so far."""

    study: optuna.Study
    ran: int
    best: FrozenTrial | None
    counts: dict[str, int] = field(default_factory=dict)


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
    heartbeat_s: int = HEARTBEAT_S,
    retries: int = RETRIES,
) -> TuneResult:
    """Work on ``study_name`` until it has ``trials`` trials; report it on its parent run."""
    for flag, value, low in (("--trials", trials, 1), ("--heartbeat", heartbeat_s, 0),
                             ("--retries", retries, 0)):
        if value < low:
            raise ConfigError(f"{flag} {value}: expected an integer >= {low}")
    space = load_space(space_path or default_space_path())
    base = validate(compose(overrides), data=data_config)
    open_store(base)
    url = storage_url(storage, default_storage_dir(tracking_uri(base.tracking.uri)))
    stale = StaleTrials(retries)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lock_key = f"scratchlab.tune:{study_name}"
    with storage_lock(url, lock_key):  # schema, study and parent: created exactly once
        study = optuna.create_study(
            storage=open_storage(url, heartbeat_s, stale), study_name=study_name,
            direction="minimize", load_if_exists=True,
            sampler=TrialSeededSampler(int(base.train.seed)),
        )
        info = _parent(study, base.plain["tracking"], list(space), url)

    def ended_orphans(*_: object) -> None:
        end_orphans(info.parent_run_id, info.experiment_id, study.get_trials(deepcopy=False))

    stale.on_failed = ended_orphans
    ended_orphans()  # runs left RUNNING by a worker that died before this one started
    out_root = out_root or project_root() / "multirun" / "optuna" / study_name
    worker = worker_id()
    log.info("study %s on %s: worker %s, MLflow parent %s, %d of %d trials done",
             study_name, redact(url), worker, info.parent_run_id,
             budget(study.get_trials(deepcopy=False)).done, trials)

    def objective(trial: optuna.Trial) -> float:
        from scratchlab.pipeline.job import run_config

        chosen = suggest(trial, space)
        name = f"trial {trial.number}: " + " ".join(chosen)
        out_dir = out_root / str(trial.number)
        try:
            config = validate(compose([*overrides, *chosen]), data=data_config)
            return run_config(config, out_dir, run_name=name,
                              tags={**child_tags(info, trial.number), "entry_point": "optuna",
                                    "optuna_study": study_name, "optuna_worker": worker},
                              parent_run_id=info.parent_run_id)
        except DivergedError as exc:  # divergence is data: the worst value, not a crash
            log.warning("%s", exc)
            trial.set_user_attr(DIVERGED_ATTR, True)
            return math.inf
        finally:
            _remember_run(trial, out_dir, name)

    try:
        with Heartbeat(info.parent_run_id):  # this worker keeps the parent alive while it works
            ran = _work(study, trials, objective, worker, info, stale, poll_s=WAIT_POLL_S)
    except BaseException:
        with deferred_interrupts():  # the next Ctrl-C cannot leave the parent RUNNING
            try:
                _finish(study, info, out_root, "KILLED", url, lock_key)
            except Exception:  # keep the original error the one reported
                log.exception("study %s: could not end the parent run", study_name)
        raise
    _finish(study, info, out_root, "FINISHED", url, lock_key)
    final = study.get_trials(deepcopy=False)
    return TuneResult(study, ran, best_trial(final), dict(summary(final)))


def _work(study: optuna.Study, total: int, objective: Callable[[optuna.Trial], float],
          worker: str, info: SweepInfo, stale: StaleTrials, poll_s: float) -> int:
    """Take trials while the study has room; then wait for the trials still running elsewhere
    (heartbeat storages only), so that one whose worker dies is still failed and retried."""
    waits = has_heartbeat(study)
    ran, waiting_logged = 0, False
    while True:
        fail_stale(study)
        standing = budget(study.get_trials(deepcopy=False))
        if standing.room(total):
            with warnings.catch_warnings():  # we run the heartbeat beside the trial ourselves
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
            if over_budget(study.get_trials(deepcopy=False), trial.number, total):
                skip(study, trial, total)
                continue
            _run_trial(study, trial, objective, worker, stale)
            ran += 1
            log_best(info.parent_run_id, study.get_trials(deepcopy=False))
            waiting_logged = False
            continue
        if not standing.running or not waits:
            return ran
        if not waiting_logged:
            log.info("study %s: %d trial(s) running on other workers; waiting for them "
                     "(a dead worker's trial is retried after its heartbeats stop)",
                     study.study_name, standing.running)
            waiting_logged = True
        time.sleep(poll_s)


def _run_trial(study: optuna.Study, trial: optuna.Trial,
               objective: Callable[[optuna.Trial], float], worker: str,
               stale: StaleTrials) -> None:
    """Run ``objective`` beside the trial's heartbeat and tell the study how it ended. An
    interrupted trial (Ctrl-C, or SIGTERM from a scheduler's time limit or preemption) is not
    the parameters' fault: it is re-queued like a dead worker's, within ``--retries``."""
    trial.set_user_attr(WORKER_ATTR, worker)
    try:
        with heartbeat(study, trial):
            value = objective(trial)
    except ScratchlabError as exc:  # recorded as a failed trial; the study goes on
        log.error("trial %d failed: %s", trial.number, exc)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return
    except BaseException as exc:
        with deferred_interrupts():  # the next Ctrl-C cannot leave the trial RUNNING
            # not ours if another worker failed (and re-queued) it while we were stopped
            ours = _frozen(study, trial).state == TrialState.RUNNING
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if isinstance(exc, KeyboardInterrupt) and ours:
                log.warning("trial %d interrupted; marked FAIL%s", trial.number,
                            stale.retry(study, _frozen(study, trial)))
            elif isinstance(exc, KeyboardInterrupt):
                log.warning("trial %d interrupted; another worker had failed it", trial.number)
        raise
    study.tell(trial, value, skip_if_finished=True)


def _frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def _remember_run(trial: optuna.Trial, out_dir: Path, name: str) -> None:
    """The trial's MLflow run (``run_job`` writes its id to ``run.json``) as user attributes."""
    try:
        run_id = json.loads((out_dir / "run.json").read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return  # failed before its run started
    # finished already if another worker took this worker for dead (heartbeats held up)
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr(RUN_ID_ATTR, run_id)
        trial.set_user_attr(RUN_NAME_ATTR, name)


def _finish(study: optuna.Study, info: SweepInfo, out_root: Path, status: str, url: str,
            lock_key: str) -> None:
    """End this worker's part. The last worker out (no trial left running or queued) writes
    the comparison to the parent and ends it; the others leave it RUNNING for them."""
    trials = study.get_trials(deepcopy=False)
    end_orphans(info.parent_run_id, info.experiment_id, trials)
    left = budget(trials)
    # trials running elsewhere have workers that will end the parent; a queued retry has none
    # yet, so an interrupted worker does not wait for it
    if left.running or (status == "FINISHED" and left.waiting):
        log_best(info.parent_run_id, trials)
        log.info("study %s: %d trial(s) still running or queued elsewhere; their workers end "
                 "the parent run", study.study_name, left.running + left.waiting)
        return
    with storage_lock(url, lock_key):
        if _reported(info):
            return
        comparison = report_parent(info.parent_run_id, out_root / "comparison",
                                   best_as_params=False)
        end_parent(info.parent_run_id,
                   parent_status(comparison) if status == "FINISHED" else status)


def _reported(info: SweepInfo) -> bool:
    """Whether another worker already ended the parent with every child counted."""
    client = MlflowClient()
    parent = client.get_run(info.parent_run_id)
    if parent.info.status == "RUNNING":
        return False
    kids = client.search_runs([info.experiment_id], max_results=10_000,
                              filter_string=f"tags.mlflow.parentRunId = '{info.parent_run_id}'")
    return parent.data.metrics.get("n_runs") == len(kids)


def _parent(study: optuna.Study, tracking: Any, keys: list[str], url: str) -> SweepInfo:
    """The study's parent run: reopened when it exists, else created and remembered. Called
    under the storage lock, so concurrent workers create it exactly once."""
    client = MlflowClient()
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:  # e.g. the study now logs to another tracking store
            log.warning("study %s: parent run %s not found (%s); starting a new one",
                        study.study_name, run_id, str(exc).splitlines()[0])
        else:
            busy_retry(lambda: client.update_run(run_id, status="RUNNING"), "reopen parent")
            owner = [RunTag(k, v) for k, v in owner_tags().items()]  # this process runs it now
            busy_retry(lambda: client.log_batch(run_id, tags=owner), "own parent")
            return SweepInfo(run.data.tags["sweep_id"], run_id, run.info.experiment_id, keys)
    info = start_parent(tracking, keys, name=f"optuna {study.study_name}",
                        tags={"entry_point": "optuna", "optuna_study": study.study_name,
                              "optuna_storage": redact(url)})
    study.set_user_attr(PARENT_ATTR, info.parent_run_id)
    return info
