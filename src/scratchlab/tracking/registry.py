"""``scratchlab promote``: a run's logged model into the MLflow model registry, alias ``champion``.

The run's model (``runs:/RUN_ID/model``, logged by every finished training run with
``tracking.log_model=true``) becomes a version of a registered model, and the alias moves to
that version, so ``models:/NAME@champion`` always loads the promoted one (``mlflow models
predict``/``serve``, ``mlflow.pyfunc.load_model``). The version carries the run's lineage as
tags (dataset, its digest, the commit) and its test metrics; promoting the same run again
reuses its version and only moves the alias. The registry lives in the tracking store (SQLite,
a database, or an ``mlflow server``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from scratchlab.core.errors import ScratchlabError, TrackingError
from scratchlab.tracking.store import busy_retry

log = logging.getLogger(__name__)

ALIAS = "champion"
MODEL = "model"  # the artifact path every run logs its network under (tracking.model)
LINEAGE_TAGS = ("dataset", "dataset_sha256", "git_commit")


class NotPromotable(ScratchlabError):
    """The run cannot serve as a champion: not finished, diverged, or no model logged."""


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    run_id: str
    new_version: bool

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{ALIAS}"


def default_name(client: MlflowClient, run) -> str:
    """``<experiment>-<dataset>``, e.g. ``scratchlab-digits``: one registered model per task."""
    experiment = client.get_experiment(run.info.experiment_id).name
    return f"{experiment}-{run.data.tags.get('dataset', 'model')}"


def _logged_model(client: MlflowClient, run):
    """The run's logged model (MLflow 3 keeps it beside the run's artifacts, as a LoggedModel),
    if the run may be a champion: finished, not diverged, its model logged."""
    run_id = run.info.run_id
    if run.info.status != "FINISHED" or run.data.tags.get("diverged") == "true":
        why = "diverged" if run.data.tags.get("diverged") == "true" else run.info.status
        raise NotPromotable(f"run {run_id}: {why}; only a finished run can be promoted")
    models = [model for model in client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
        if model.name == MODEL]
    if not models:
        raise NotPromotable(f"run {run_id}: no logged model '{MODEL}' (was it trained with "
                            "tracking.log_model=false, or is it a cross-validation or lr-find "
                            "run?); promote a run that logged one")
    return max(models, key=lambda model: model.creation_timestamp)


def promote(run_id: str, name: str | None = None) -> Promotion:
    """Register ``run_id``'s model as ``name`` (default :func:`default_name`) and point
    ``champion`` at it."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(f"run {run_id}: not in the store ({str(exc).splitlines()[0]})") \
            from None
    model = _logged_model(client, run)
    name = name or default_name(client, run)
    try:
        existing = [v for v in client.search_model_versions(f"run_id = '{run_id}'")
                    if v.name == name]
        if existing:
            version = existing[0]
        else:
            tags = {k: run.data.tags[k] for k in LINEAGE_TAGS if k in run.data.tags}
            tags |= {k: f"{v:.6g}" for k, v in run.data.metrics.items() if k.startswith("test_")}
            version = busy_retry(lambda: mlflow.register_model(model.model_uri, name,
                                                               tags=tags), "register")
            busy_retry(lambda: client.update_model_version(
                name, version.version,
                description=f"promoted from run {run.info.run_name or run_id}"), "describe")
        busy_retry(lambda: client.set_registered_model_alias(name, ALIAS, version.version),
                   f"set alias {ALIAS}")
        busy_retry(lambda: client.set_tag(run_id, "promoted_to",
                                          f"{name} v{version.version}"), "tag run")
    except MlflowException as exc:
        raise TrackingError(f"promote {run_id} as {name!r}: {str(exc).splitlines()[0]}") \
            from None
    log.info("%s version %s is %s (run %s)", name, version.version, ALIAS, run_id)
    return Promotion(name, str(version.version), run_id, not existing)
