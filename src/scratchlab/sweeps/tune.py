"""``scratchlab tune``: an Optuna study driving the same jobs as the Hydra app, resumable.

Trials live in a SQLite study storage beside the MLflow store (``mlruns/optuna.db``): running
the command again with the same ``--study`` continues the numbering and the search where it
stopped. The study is one MLflow parent run (its id kept in the study's user attributes) with a
child run per trial. hydra-optuna-sweeper is not used: it pins optuna 2.10, whose SQLite
storage fails under the SQLAlchemy 2 that MLflow needs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.entities import RunTag

from scratchlab.config import compose, validate
from scratchlab.data.registry import data_config
from scratchlab.errors import DivergedError, ScratchlabError
from scratchlab.paths import project_root
from scratchlab.sweeps.parent import SweepInfo, child_tags, end_parent, start_parent
from scratchlab.sweeps.report import parent_status, report_parent
from scratchlab.sweeps.space import default_space_path, load_space, suggest
from scratchlab.tracking.liveness import Heartbeat, owner_tags
from scratchlab.tracking.retry import with_retry
from scratchlab.tracking.store import connect, sqlite_path, tracking_uri

log = logging.getLogger("scratchlab")

PARENT_ATTR = "mlflow_parent_run_id"
OPTUNA_DB = "optuna.db"
SQLITE_TIMEOUT_S = 30


def study_storage(uri: str) -> optuna.storages.RDBStorage:
    """SQLite next to a SQLite MLflow store, else in the project's ``mlruns/``."""
    db = sqlite_path(uri)
    directory = db.parent if db is not None else project_root() / "mlruns"
    directory.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(
        f"sqlite:///{directory / OPTUNA_DB}",
        engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}},
    )


def tune(
    study_name: str,
    trials: int,
    overrides: Sequence[str] = (),
    space_path: Path | None = None,
    out_root: Path | None = None,
) -> optuna.Study:
    """Run ``trials`` more trials of ``study_name``; report the study on its parent run."""
    space = load_space(space_path or default_space_path())
    base = validate(compose(overrides), data=data_config)
    connect(base.tracking.uri, base.tracking.experiment)
    storage = study_storage(tracking_uri(base.tracking.uri))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction="minimize", load_if_exists=True
    )
    # seeded for reproducibility, offset so a resumed study does not replay its first trials
    study.sampler = optuna.samplers.TPESampler(seed=base.train.seed + len(study.trials))
    info = _parent(study, base.plain["tracking"], list(space))
    out_root = out_root or project_root() / "multirun" / "optuna" / study_name

    def objective(trial: optuna.Trial) -> float:
        from scratchlab.job import run_config

        chosen = suggest(trial, space)
        config = validate(compose([*overrides, *chosen]), data=data_config)
        name = f"trial {trial.number}: " + " ".join(chosen)
        try:
            return run_config(config, out_root / str(trial.number), run_name=name,
                              tags={**child_tags(info, trial.number), "entry_point": "optuna",
                                    "optuna_study": study_name},
                              parent_run_id=info.parent_run_id)
        except DivergedError as exc:  # divergence is data: the worst value, not a crash
            log.warning("%s", exc)
            trial.set_user_attr("diverged", True)
            return math.inf

    status = "KILLED"
    try:
        with Heartbeat(info.parent_run_id):
            study.optimize(objective, n_trials=trials, catch=(ScratchlabError,))
        status = "FINISHED"
    finally:
        comparison = report_parent(info.parent_run_id, out_root / "comparison",
                                   best_as_params=False)
        end_parent(info.parent_run_id, parent_status(comparison) if status == "FINISHED"
                   else status)
    return study


def _parent(study: optuna.Study, tracking, keys: list[str]) -> SweepInfo:
    """The study's parent run: reopened when resuming, created (and remembered) when new."""
    client = MlflowClient()
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id is not None:
        run = client.get_run(run_id)
        owner = [RunTag(k, v) for k, v in owner_tags().items()]  # this process runs it now
        with_retry(lambda: client.log_batch(run_id, tags=owner), "own parent")
        with_retry(lambda: client.update_run(run_id, status="RUNNING"), "reopen parent")
        tags = run.data.tags
        return SweepInfo(tags["sweep_id"], run_id, run.info.experiment_id, keys)
    info = start_parent(tracking, keys, name=f"optuna {study.study_name}",
                        tags={"entry_point": "optuna", "optuna_study": study.study_name})
    study.set_user_attr(PARENT_ATTR, info.parent_run_id)
    return info
