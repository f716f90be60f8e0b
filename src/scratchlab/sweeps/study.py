"""Optuna studies shared by many ``scratchlab tune`` workers, on one machine or many.

- **Storage**: any Optuna storage URL: SQLAlchemy (``postgresql+psycopg2://``, ``mysql://``,
  ``sqlite:///``) or ``journal:PATH`` (Optuna's journal file, for a shared filesystem). The
  default is ``mlruns/optuna.db`` beside the MLflow SQLite store.
- **Lock**: :func:`storage_lock` serialises what must happen once per storage or study (schema
  creation, creating the study and its MLflow parent, the final report) across processes and
  machines: a PostgreSQL advisory lock, MySQL's ``GET_LOCK``, or a POSIX lock on a file beside a
  SQLite database or journal file.
- **Budget**: ``--trials N`` is the study's total. :func:`budget` counts the trials that have a
  result (complete, pruned, failed and not retried) plus those running or waiting; a worker
  starts a trial only while that count is below N, and :func:`over_budget` re-checks by trial
  number after ``ask`` (Optuna numbers trials under a row lock on the study, so numbers are
  exact), skipping the rare trial created by two workers at the same instant.
- **Seeds**: :class:`TrialSeededSampler` seeds TPE from ``(train.seed, trial number)``. Trial
  numbers are unique in a study, so no two workers, wherever they run, share a random stream,
  and a study run by one worker is reproducible.
- **Failure**: RDB storages get Optuna heartbeats; a trial whose worker stopped beating is
  failed by whichever worker notices, retried (re-enqueued with the same parameters) up to
  ``--retries`` times, and :func:`end_orphans` ends its MLflow child run FAILED.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from scratchlab.core.errors import ConfigError, TrackingError
from scratchlab.tracking.store import busy_retry

log = logging.getLogger("scratchlab")

JOURNAL = "journal:"
OPTUNA_DB = "optuna.db"
SQLITE_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_S = 300.0
LOCK_POLL_S = 0.2

SKIPPED_ATTR = "skipped"  # trial user attr: created past the budget, never run
RUN_ID_ATTR = "mlflow_run_id"
RUN_NAME_ATTR = "mlflow_run_name"
WORKER_ATTR = "worker"
DIVERGED_ATTR = "diverged"
ENDED_BY_TAG = "ended_by"
TRIAL_FAILED_TAG = "trial_failed"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------- storage URLs


def storage_url(given: str | None, default_dir: Path) -> str:
    """The storage to use: ``given`` (normalised), else ``sqlite:///<default_dir>/optuna.db``."""
    if not given:
        default_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{default_dir / OPTUNA_DB}"
    if given.startswith(JOURNAL):
        path = given.removeprefix(JOURNAL)
        path = path.removeprefix("//") if path.startswith("///") else path
        if not path:
            raise ConfigError(f"--storage {given}: expected journal:PATH (a journal file)")
        return JOURNAL + str(Path(path).expanduser().resolve())
    if "://" not in given:
        raise ConfigError(f"--storage {given}: expected an SQLAlchemy URL "
                          "(postgresql+psycopg2://..., mysql://..., sqlite:///...) or journal:PATH")
    return with_installed_driver(given)


def with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is there."""
    scheme, rest = url.split("://", 1)
    if scheme != "postgresql":
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and tags."""
    if "://" not in url or "@" not in url.split("://", 1)[1]:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


def sqlite_file(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0]) if url.startswith(
        "sqlite:///") else None


def journal_file(url: str) -> Path | None:
    return Path(url.removeprefix(JOURNAL)) if url.startswith(JOURNAL) else None


def _rdb_dialect(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0]


# ------------------------------------------------------------------------------- locks


@contextlib.contextmanager
def storage_lock(url: str, key: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock named ``key`` on the storage at ``url`` (every process, every
    machine that reaches the storage); released when the holder exits or dies."""
    local = sqlite_file(url) or journal_file(url)
    if local is not None:  # not <journal>.lock: Optuna's own journal lock is that file
        local.parent.mkdir(parents=True, exist_ok=True)
        suffix = ".lock" if sqlite_file(url) else ".scratchlab-lock"
        with _file_lock(local.with_name(local.name + suffix), timeout_s):
            yield
        return
    dialect = _rdb_dialect(url)
    if dialect in ("postgresql", "mysql", "mariadb"):
        with _db_lock(url, dialect, key, timeout_s):
            yield
        return
    log.warning("%s: no cross-process lock for %s databases; start one worker first, then the "
                "others", redact(url), dialect)
    yield


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """A POSIX record lock (``lockf``): local disks and NFS with locking alike."""
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TrackingError(f"{path}: still locked after {timeout_s:.0f} s") from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _db_lock(url: str, dialect: str, key: str, timeout_s: float) -> Iterator[None]:
    """A session-level advisory lock: PostgreSQL ``pg_advisory_lock``, MySQL ``GET_LOCK``."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
        conn = engine.connect()
    except Exception as exc:
        raise TrackingError(f"{redact(url)}: cannot connect to the study storage "
                            f"({_first_line(exc)})") from exc
    try:
        if dialect == "postgresql":
            number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            take = sqlalchemy.text("SELECT pg_try_advisory_lock(:k)").bindparams(k=number)
            give = sqlalchemy.text("SELECT pg_advisory_unlock(:k)").bindparams(k=number)
        else:  # MySQL lock names are at most 64 characters
            name = "scratchlab:" + hashlib.sha256(key.encode()).hexdigest()[:40]
            take = sqlalchemy.text("SELECT GET_LOCK(:k, 0)").bindparams(k=name)
            give = sqlalchemy.text("SELECT RELEASE_LOCK(:k)").bindparams(k=name)
        deadline = time.monotonic() + timeout_s
        while not conn.execute(take).scalar():
            conn.rollback()  # end the transaction the query opened before waiting
            if time.monotonic() > deadline:
                raise TrackingError(f"{redact(url)}: lock {key!r} still held after "
                                    f"{timeout_s:.0f} s")
            time.sleep(LOCK_POLL_S)
        conn.commit()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(give)
                conn.commit()
    finally:
        conn.close()
        engine.dispose()


# ----------------------------------------------------------------------------- storage


class StaleTrials:
    """What happens to a trial whose worker stopped sending heartbeats (after Optuna failed it):
    re-enqueue it with the same parameters (up to ``retries`` times) and end its MLflow run."""

    def __init__(self, retries: int, on_failed: Callable[[FrozenTrial], None] | None = None):
        self.retries = retries
        self.on_failed = on_failed

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning("trial %d: worker %s stopped sending heartbeats; trial marked FAIL%s",
                    trial.number, trial.user_attrs.get(WORKER_ATTR, "?"),
                    self.retry(study, trial))
        if self.on_failed is not None:
            self.on_failed(trial)

    def retry(self, study: optuna.Study, trial: FrozenTrial) -> str:
        """Queue ``trial`` again with the same parameters unless it ran out of retries."""
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.retries:
            return f" (not retried: --retries {self.retries})"
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items()
                        if k not in (RUN_ID_ATTR, RUN_NAME_ATTR, WORKER_ATTR)},
            # the attributes Optuna's RetryHeartbeatStaleTrialCallback writes
            system_attrs={**trial.system_attrs, "failed_trial": history[0],
                          "retry_history": history},
        ))
        return f"; retry {len(history)} of {self.retries} queued with the same parameters"


def open_storage(url: str, heartbeat_s: int, on_stale: StaleTrials) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (call under :func:`storage_lock`: creates the schema)."""
    journal = journal_file(url)
    try:
        if journal is not None:
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite:"):
            engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        elif _rdb_dialect(url) in ("postgresql", "mysql", "mariadb"):
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        heartbeat: dict[str, Any] = {}
        if heartbeat_s > 0:
            params = inspect.signature(optuna.storages.RDBStorage).parameters
            callback = ("heartbeat_stale_trial_callback"
                        if "heartbeat_stale_trial_callback" in params else "failed_trial_callback")
            heartbeat = {"heartbeat_interval": heartbeat_s, "grace_period": 3 * heartbeat_s,
                         callback: on_stale}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except (ConfigError, TrackingError):
        raise
    except Exception as exc:
        raise TrackingError(f"{redact(url)}: cannot open the study storage "
                            f"({_first_line(exc)})") from exc


def has_heartbeat(study: optuna.Study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose workers stopped beating (runs :class:`StaleTrials` on each)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """The heartbeat thread ``Study.optimize`` runs beside a trial (a no-op without one)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield


# ------------------------------------------------------------------------------ budget


@dataclass
class Budget:
    """How a study stands against its total: trials with a result, running, waiting."""

    done: int
    running: int
    waiting: int

    def room(self, total: int) -> bool:
        """Whether a worker may start a trial now (a queued retry always may)."""
        return self.waiting > 0 or self.done + self.running < total


def _retried(trials: Iterable[FrozenTrial]) -> set[int]:
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def _counts(trial: FrozenTrial, retried: set[int]) -> bool:
    if trial.user_attrs.get(SKIPPED_ATTR):
        return False
    return not (trial.state == TrialState.FAIL and trial.number in retried)


def budget(trials: Sequence[FrozenTrial]) -> Budget:
    retried = _retried(trials)
    counted = [t for t in trials if _counts(t, retried)]
    return Budget(
        done=sum(t.state.is_finished() for t in counted),
        running=sum(t.state == TrialState.RUNNING for t in counted),
        waiting=sum(t.state == TrialState.WAITING for t in counted),
    )


def over_budget(trials: Sequence[FrozenTrial], number: int, total: int) -> bool:
    """Whether trial ``number``, just created by ``ask``, lies past the study's total.

    A trial handed out from the queue (a retry, or one the user enqueued) never is: it is
    already one of the N. A fresh one is, when N counted trials came before it.
    """
    mine = next((t for t in trials if t.number == number), None)
    if mine is None or mine.params or "fixed_params" in mine.system_attrs:
        return False
    retried = _retried(trials)
    return sum(t.number < number and _counts(t, retried) for t in trials) >= total


def skip(study: optuna.Study, trial: optuna.Trial, total: int) -> None:
    trial.set_user_attr(SKIPPED_ATTR, f"the study already had {total} trials")
    study.tell(trial, state=TrialState.FAIL)
    log.info("trial %d not run: the study already has its %d trials", trial.number, total)


# ------------------------------------------------------------------------------ seeds


def trial_seed(base_seed: int, number: int) -> int:
    digest = hashlib.sha256(f"scratchlab-tune:{base_seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class TrialSeededSampler(BaseSampler):
    """TPE whose random stream is seeded per trial from ``(base_seed, trial number)``.

    Workers sharing a study never draw from the same stream (trial numbers are unique), and
    with ``constant_liar`` TPE treats trials still running elsewhere as bad, so concurrent
    workers spread out instead of proposing the same region.
    """

    def __init__(self, base_seed: int, **tpe_kwargs: Any) -> None:
        self.base_seed = base_seed
        self.tpe_kwargs = {"constant_liar": True, **tpe_kwargs}
        self._by_trial: dict[int, TPESampler] = {}

    def _tpe(self, trial: FrozenTrial) -> TPESampler:
        sampler = self._by_trial.get(trial.number)
        if sampler is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = TPESampler(seed=trial_seed(self.base_seed, trial.number),
                                     **self.tpe_kwargs)
            self._by_trial[trial.number] = sampler
        return sampler

    def infer_relative_search_space(self, study, trial):
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        sampler = self._by_trial.pop(trial.number, None)
        if sampler is not None:
            sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seed is a function of the trial: nothing to reseed
        pass


# ------------------------------------------------------------------ MLflow bookkeeping


def best_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The complete, non-diverged trial with the lowest finite value."""
    candidates = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                  and math.isfinite(t.value) and not t.user_attrs.get(DIVERGED_ATTR)]
    return min(candidates, key=lambda t: (t.value, t.number), default=None)


def log_best(parent_run_id: str, trials: Sequence[FrozenTrial], objective: str = "val_loss"
             ) -> None:
    """Put the study's best trial so far on the parent run (tags and ``best_*`` metric)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag
    from mlflow.utils.time import get_current_time_millis

    best = best_trial(trials)
    if best is None:
        return
    tags = {"best_trial": str(best.number)}
    for attr, tag in ((RUN_ID_ATTR, "best_run_id"), (RUN_NAME_ATTR, "best_run_name")):
        if attr in best.user_attrs:
            tags[tag] = str(best.user_attrs[attr])
    step = budget(trials).done
    metric = Metric(f"best_{objective}", float(best.value), get_current_time_millis(), step)
    client = MlflowClient()
    busy_retry(lambda: client.log_batch(parent_run_id, metrics=[metric],
                                        tags=[RunTag(k, v) for k, v in tags.items()]),
               "log best trial")


def end_orphans(parent_run_id: str, experiment_id: str, trials: Sequence[FrozenTrial]) -> int:
    """Make the child runs of dead workers say so; returns how many were changed.

    - RUNNING while its trial is over (failed by the heartbeat check, say): the worker died
      mid-trial and nobody else will end the run: ended FAILED, tag ``ended_by``.
    - FINISHED while its trial FAILED: the worker died after the run ended but before Optuna
      recorded the result, so the trial was failed (and maybe retried): tag ``trial_failed``,
      so the run is not mistaken for the trial's result.
    """
    from mlflow import MlflowClient

    from scratchlab.sweeps.parent import TAG_JOB

    state = {t.number: t.state for t in trials}
    client = MlflowClient()
    kids = busy_retry(lambda: client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=10_000), "find orphaned trial runs")
    changed = 0
    for run in kids:
        job = run.data.tags.get(TAG_JOB, "")
        trial_state = state.get(int(job)) if job.isdigit() else None
        if trial_state is None or not trial_state.is_finished():
            continue
        run_id, number, status = run.info.run_id, int(job), run.info.status
        if status == "RUNNING":
            reason = (f"scratchlab tune: Optuna trial {number} is {trial_state.name} while this "
                      "run was still RUNNING (its worker died mid-trial)")
            busy_retry(lambda r=run_id, why=reason: client.set_tag(r, ENDED_BY_TAG, why),
                       "tag orphaned run")
            busy_retry(lambda r=run_id: client.set_terminated(r, "FAILED"), "end orphaned run")
            log.warning("MLflow run %s of trial %d ended FAILED: its worker died", run_id,
                        number)
        elif (status == "FINISHED" and trial_state == TrialState.FAIL
              and TRIAL_FAILED_TAG not in run.data.tags):
            reason = (f"scratchlab tune: the worker died after this run ended, before Optuna "
                      f"recorded trial {number}'s result; the trial is FAIL")
            busy_retry(lambda r=run_id, why=reason: client.set_tag(r, TRIAL_FAILED_TAG, why),
                       "tag orphaned run")
            log.warning("MLflow run %s finished but trial %d failed: its worker died", run_id,
                        number)
        else:
            continue
        changed += 1
    return changed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def summary(trials: Sequence[FrozenTrial]) -> Mapping[str, Any]:
    """Counts for the final message: trials with a result, and how they ended."""
    b = budget(trials)
    retried = _retried(trials)
    counted = [t for t in trials if _counts(t, retried)]
    return {
        "trials": b.done,
        "failed": sum(t.state == TrialState.FAIL for t in counted),
        "retried": len(retried),
        "running": b.running + b.waiting,
    }
