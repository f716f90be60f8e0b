"""Pruning in ``scratchlab tune``: the pruner config, a pruned job's run in-process, and whole
studies on real Optuna storages (SQLite and a journal file, two workers each; PostgreSQL is in
``test_scaleout.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from scratchlab.api import config
from scratchlab.core.errors import ConfigError
from scratchlab.pipeline.job import run_config
from scratchlab.sweeps.compare import table_text
from scratchlab.sweeps.parent import child_tags, start_parent
from scratchlab.sweeps.pruning import (
    PRUNED,
    PRUNERS,
    ReportToTrial,
    first_prunable_epoch,
    load_pruning,
    make_pruner,
)
from scratchlab.sweeps.report import report_parent
from scratchlab.sweeps.space import default_space_path, read_study_file
from test_sweep_support import PRUNING_EPOCHS, check_pruned_study, env_for, study_file

JOB = (f"train.epochs={PRUNING_EPOCHS}", "train.progress=false", "tracking.log_model=false")


def _pruning(path: Path, pruner: str | None = None):
    return load_pruning(read_study_file(path), path, pruner)


def test_pruners_are_config_and_mistakes_name_the_key(tmp_path: Path) -> None:
    path = study_file(tmp_path, "pruner: median\npruners:\n  median: {startup_trials: 2, "
                            "warmup_epochs: 4}\n  hyperband: {min_epochs: 2}\n")
    median = make_pruner(_pruning(path), max_epochs=20)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 4)
    band = make_pruner(_pruning(path, "hyperband"), max_epochs=20)  # --pruner wins
    assert isinstance(band, optuna.pruners.HyperbandPruner)
    assert (band._min_resource, band._max_resource, band._reduction_factor) == (2, 20, 3)
    halving = make_pruner(_pruning(path, "successive_halving"), max_epochs=20)
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
    # asked from the first epoch it could prune at: median's warm-up, halving's first rung
    assert [first_prunable_epoch(_pruning(path, name)) for name in PRUNERS] == [1, 4, 1, 2]
    assert isinstance(make_pruner(_pruning(study_file(tmp_path, "")), 20), optuna.pruners.NopPruner)
    shipped = default_space_path()  # every pruner builds from the shipped file's settings
    for name in PRUNERS:
        make_pruner(load_pruning(read_study_file(shipped), shipped, name), max_epochs=40)

    with pytest.raises(ConfigError, match=r"^--pruner: pruner='mediam' is not allowed; "
                                          r"expected one of none, median"):
        _pruning(path, "mediam")
    bad = study_file(tmp_path, "pruners:\n  median: {warmup_epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"space.yaml: pruners.median.warmup_epochs=0 is out "
                                          r"of range"):
        _pruning(bad)
    typo = study_file(tmp_path, "pruners:\n  median: {warmup: 2}\n")
    with pytest.raises(ConfigError, match=r"pruners.median.warmup: unknown key"):
        _pruning(typo)
    with pytest.raises(ConfigError, match=r"space.yaml: prunner: unknown key; allowed: params, "
                                          r"pruner, pruners"):
        read_study_file(study_file(tmp_path, "prunner: median\n"))


def test_a_pruned_job_ends_finished_with_its_curves_so_far(tracking_uri: str,
                                                           tmp_path: Path) -> None:
    """A trial far worse than a completed one at epoch 2 is stopped there: its run FINISHED,
    tags pruned/pruned_epoch, two epochs of curves, no test evaluation; the parent counts it
    and never names it best."""
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2))
    lr = {"optimizer.lr": FloatDistribution(1e-5, 1.0, log=True)}
    good = study.ask(lr)
    for step in range(1, PRUNING_EPOCHS + 1):
        good.report(0.01, step)
    study.tell(good, 0.01)

    base = config(*JOB)
    info = start_parent(base.plain["tracking"], ["optimizer.lr"], "study", {})
    trial = study.ask(lr)
    reporter = ReportToTrial(trial)
    value = run_config(config(*JOB, "optimizer.lr=0.0001"),
                       tmp_path / "pruned", run_name="hopeless", tags=child_tags(info, 1),
                       parent_run_id=info.parent_run_id, callbacks=[reporter])
    assert reporter.pruned_epoch == 2  # the first epoch the warm-up allows
    assert sorted(study.trials[1].intermediate_values) == [1, 2]
    assert study.trials[1].intermediate_values[2] == pytest.approx(value)

    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([info.experiment_id], "attributes.run_name = 'hopeless'")
    assert run.info.status == "FINISHED"
    assert run.data.tags[PRUNED] == "true" and run.data.tags["pruned_epoch"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert "test_accuracy" not in run.data.metrics  # not a result: never tested
    assert (tmp_path / "pruned" / "history.csv").read_text().count("\n") == 3  # header + 2

    run_config(config(*JOB, "optimizer.lr=0.3"),
               tmp_path / "complete", run_name="complete", tags=child_tags(info, 0),
               parent_run_id=info.parent_run_id)
    comparison = report_parent(info.parent_run_id, tmp_path / "comparison")
    assert [(r.name, r.pruned) for r in comparison.runs] == [("complete", False),
                                                             ("hopeless", True)]
    assert comparison.best.name == "complete"
    assert client.get_run(info.parent_run_id).data.metrics["n_pruned"] == 1
    text = table_text(comparison)
    assert "pruned" in text.splitlines()[0] and "1 of 2 runs pruned" in text


def _tune(tmp_path: Path, study: str, space: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scratchlab.cli", "tune", "--study", study, "--trials", "8",
            "--space", str(space), "--out", str(tmp_path / "out"), *extra,
            f"train.epochs={PRUNING_EPOCHS}", "train.seed=1", "train.progress=false",
            "tracking.log_model=false"]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_two_workers_prune_hopeless_trials(tmp_path: Path, storage: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    if storage == "sqlite":
        url = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
        extra, load = [], url
    else:
        url = f"journal:{tmp_path / 'studies.log'}"
        extra = ["--storage", url]
        load = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "studies.log")))
    space = study_file(tmp_path, "pruner: median\npruners:\n  median: {startup_trials: 1, "
                             "warmup_epochs: 2}\n")
    command = _tune(tmp_path, "p", space, *extra)
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env_for(uri), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=600)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = [t for t in optuna.load_study(study_name="p", storage=load).trials
              if not t.user_attrs.get("skipped")]
    assert len(trials) == 8 and {t.state for t in trials} <= {TrialState.COMPLETE,
                                                              TrialState.PRUNED}
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    # the last worker out sees them all (on a journal file, without heartbeats, the first one
    # leaves while the other still runs its last trial)
    assert any(f"study p: 8 trials, {pruned} pruned" in out for out in outputs), outputs
    check_pruned_study(trials, uri, "p", tmp_path)
