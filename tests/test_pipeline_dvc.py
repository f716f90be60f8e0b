"""The whole pipeline through real `dvc repro` / `dvc exp run` in a copy of the repo."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from helpers import REPO, copy_repo, project_env
from stage_contracts import closure, dep_units, stage_entries

# one xdist worker runs this whole module, so its module-scoped fixture is built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_pipeline_dvc")]


def _dvc(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["dvc", *args], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    root = copy_repo(tmp_path_factory.mktemp("project"))
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = project_env(root, uri)
    _dvc(root, env, "repro")
    return root, env, uri


def test_repro_reaches_the_accuracy_and_fills_mlflow(project) -> None:
    root, env, uri = project
    shown = json.loads(_dvc(root, env, "metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert metrics["test_accuracy"] >= 0.95

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("scratchlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.name"] == "momentum"
    assert run.data.params["model.hidden"] == "[100]"
    assert run.data.tags["dataset"] == "digits" and len(run.data.tags["dataset_sha256"]) == 64
    assert run.data.tags["seed"] == "0" and run.data.tags["git_commit"] != "unknown"
    assert run.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    epochs = int(run.data.params["train.epochs"])
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(1, epochs + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    for name in ("confusion_matrix.png", "confusion_matrix.json", "classification_report.txt",
                 "classification_report.json", "metrics.json"):
        assert f"evaluation/{name}" in artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "config.yaml", "history.png", "weights", "evaluation"
    }
    assert json.loads((root / "models" / "run.json").read_text())["run_id"] == run.info.run_id
    # the artifacts live in the store beside the database, not in the working directory
    assert (root / "mlruns" / "artifacts").is_dir()


def test_second_repro_changes_nothing(project) -> None:
    root, env, _ = project
    before = _sha(root / "dvc.lock")
    out = _dvc(root, env, "repro")
    assert "Running stage" not in out
    assert "up to date" in _dvc(root, env, "status")
    assert _sha(root / "dvc.lock") == before


def test_fresh_repro_rewrites_only_the_run_id_in_dvc_lock(project) -> None:
    """The committed dvc.lock pins the sources, data, weights and metrics a fresh clone makes;
    only models/run.json (a new MLflow run id per run) differs, and with it the hash of the
    models/ folder evaluate depends on."""
    root, _, _ = project

    def pins(lock: Path) -> dict:
        stages = yaml.safe_load(lock.read_text())["stages"]
        return {(stage, kind, entry["path"]): entry.get("md5") for stage, body in stages.items()
                for kind in ("deps", "outs") for entry in body.get(kind, [])}

    committed, fresh = pins(REPO / "dvc.lock"), pins(root / "dvc.lock")
    assert committed.keys() == fresh.keys()
    changed = {key[2] for key in committed if committed[key] != fresh[key]}
    assert changed == {"models/run.json", "models"}


def _reproduce(root: Path, env: dict[str, str], run_id: str) -> subprocess.CompletedProcess:
    return subprocess.run(["scratchlab", "reproduce", run_id], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)


def test_reproduce_reruns_a_pipeline_run_and_a_hydra_run_identically(project) -> None:
    root, env, uri = project
    pipeline_run = json.loads((root / "models" / "run.json").read_text())["run_id"]
    done = _reproduce(root, env, pipeline_run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("identical (weights and 3 test metrics)")
    out = root / "outputs" / "app"
    subprocess.run([sys.executable, "-m", "scratchlab.train", "train.epochs=3",
                    "train.progress=false", f"hydra.run.dir={out}"], cwd=root, env=env,
                   check=True, capture_output=True, timeout=300)
    app_run = json.loads((out / "run.json").read_text())["run_id"]
    done = _reproduce(root, env, app_run)
    assert done.returncode == 0 and "identical" in done.stdout, done.stderr[-2000:]
    # a logged metric that the re-run cannot match is reported, exit 1
    mlflow.MlflowClient(tracking_uri=uri).log_metric(app_run, "test_accuracy", 0.5)
    done = _reproduce(root, env, app_run)
    assert done.returncode == 1 and "differs" in done.stderr and "test_accuracy" in done.stderr


def test_reproduce_refuses_uncommitted_or_unknown_code(project) -> None:
    root, env, uri = project
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(  # apart from the pipeline's runs
        "refused", artifact_location=(root / "mlruns" / "refused").as_uri())
    for commit, why in (("0" * 40 + "+dirty", "uncommitted changes"),
                        ("1" * 40, "is not in this repository"), ("unknown", "no git commit")):
        run = client.create_run(experiment, tags={"git_commit": commit})
        client.set_terminated(run.info.run_id)
        done = _reproduce(root, env, run.info.run_id)
        errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
        assert done.returncode == 6 and len(errors) == 1 and why in errors[0], done.stderr


def test_reproduce_refuses_data_it_cannot_match_before_training(project) -> None:
    """A run whose manifest names files that neither a local copy nor the fetch gives: one
    line naming its dataset_sha256, exit 6."""
    from scratchlab.pipeline.reproduce import dataset_digest

    root, env, uri = project
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(
        "refused-data", artifact_location=(root / "mlruns" / "refused-data").as_uri())
    manifest = {"name": "digits", "files": {"digits.npz": {"sha256": "0" * 64, "bytes": 1}},
                "source": {"loader": "sklearn.datasets.load_digits"}}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()
    run = client.create_run(experiment, tags={"git_commit": head,
                                              "dataset_sha256": dataset_digest(manifest)})
    run_id = run.info.run_id
    client.log_dict(run_id, yaml.safe_load((root / "params.yaml").read_text()), "config.yaml")
    client.log_dict(run_id, manifest, "data/manifest.json")
    client.log_artifact(run_id, str(root / "models" / "model.npz"), "weights")
    client.set_terminated(run_id)
    done = _reproduce(root, env, run_id)
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert done.returncode == 6 and len(errors) == 1, done.stderr
    assert f"dataset_sha256 {dataset_digest(manifest)[:12]}) is not available" in errors[0]


def _status(root: Path, env: dict[str, str]) -> set[str]:
    """The stages `dvc status` calls changed."""
    return set(json.loads(_dvc(root, env, "status", "--json") or "{}"))


@pytest.mark.parametrize(
    "module", ["src/scratchlab/data/idx.py", "src/scratchlab/nn/layers.py",
               "src/scratchlab/pipeline/evaluation.py"],
)
def test_a_code_edit_marks_exactly_the_stages_that_run_it(project, module: str) -> None:
    root, env, _ = project
    path = root / module
    original = path.read_text()
    runs_it = {stage for stage, entry in stage_entries(root / "dvc.yaml").items()
               if Path(module) in closure(entry) or Path(module).parent in
               dep_units(closure(entry))}  # a package folder it enters covers its files
    assert runs_it and runs_it != set(stage_entries(root / "dvc.yaml"))
    try:
        path.write_text(original + "\n# an edit DVC must notice\n")
        assert _status(root, env) == runs_it
    finally:
        path.write_text(original)
    assert _status(root, env) == set()


def test_only_params_that_change_outputs_rerun_stages(project) -> None:
    root, env, _ = project
    params = root / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("progress: true", "progress: false"))
        assert _status(root, env) == set()  # a progress bar retrains nothing
        params.write_text(original.replace("lr: 0.3", "lr: 0.2"))
        assert _status(root, env) == {"train", "evaluate"}
    finally:
        params.write_text(original)


def test_same_seed_gives_identical_weights_and_metrics(project) -> None:
    root, env, _ = project
    weights = _sha(root / "models" / "model.npz")
    metrics = (root / "reports" / "metrics.json").read_text()
    _dvc(root, env, "repro", "--force", "--single-item", "train")
    _dvc(root, env, "repro", "--force", "--single-item", "evaluate")
    assert _sha(root / "models" / "model.npz") == weights
    assert (root / "reports" / "metrics.json").read_text() == metrics


def _head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_exp_run_with_a_new_lr_reruns_only_train_and_evaluate(project) -> None:
    """... and its MLflow run is named after the experiment, tagged with it and the commit,
    so `dvc exp show` and the UI lead to each other."""
    root, env, uri = project
    out = _dvc(root, env, "exp", "run", "-n", "lr-low", "-S", "optimizer.lr=0.05")
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'fetch'" not in out and "Running stage 'preprocess'" not in out
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("scratchlab").experiment_id],
                                "tags.`dvc.exp` = 'lr-low'")
    assert run.info.run_name == "lr-low" and run.data.params["optimizer.lr"] == "0.05"
    assert run.data.tags["git_commit"] == run.data.tags["dvc.exp.baseline"] == _head(root)
    shown = json.loads(_dvc(root, env, "exp", "show", "--json"))
    names = {exp["name"]: exp["revs"][0]["data"] for entry in shown
             for exp in entry.get("experiments") or ()}
    assert names["lr-low"]["metrics"]["reports/metrics.json"]["data"]["test_accuracy"] == \
        run.data.metrics["test_accuracy"]


def _metrics(entry: dict) -> dict:
    return entry["data"]["metrics"]["reports/metrics.json"]["data"]


def test_exp_show_and_metrics_diff_show_every_experiments_metrics(project) -> None:
    """main, a `dvc exp run -S` experiment and a queued one all have their test metrics."""
    root, env, uri = project
    _dvc(root, env, "exp", "run", "--queue", "-S", "optimizer.lr=0.1", "-S", "train.epochs=3")
    _dvc(root, env, "exp", "run", "--run-all")
    shown = json.loads(_dvc(root, env, "exp", "show", "--json"))
    baseline = next(entry for entry in shown if entry.get("name") in ("main", "master"))
    assert _metrics(baseline)["test_accuracy"] >= 0.95
    experiments = {rev["data"]["params"]["params.yaml"]["data"]["optimizer"]["lr"]:
                   _metrics(rev) for exp in baseline["experiments"] for rev in exp["revs"]}
    assert {0.05, 0.1} <= set(experiments)
    assert all(0.5 < m["test_accuracy"] < 1 and m["test_loss"] > 0 for m in experiments.values())
    queued = next(exp["name"] for exp in baseline["experiments"]
                  if exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["optimizer"]["lr"]
                  == 0.1)
    client = mlflow.MlflowClient(tracking_uri=uri)  # a queued run, in DVC's temp copy, too
    (run,) = client.search_runs([client.get_experiment_by_name("scratchlab").experiment_id],
                                f"tags.`dvc.exp` = '{queued}'")
    assert run.info.run_name == queued and run.data.params["optimizer.lr"] == "0.1"
    diff = json.loads(_dvc(root, env, "metrics", "diff", "--json"))["reports/metrics.json"]
    assert diff["test_accuracy"]["old"] == _metrics(baseline)["test_accuracy"]


def test_a_failed_exp_run_says_how_to_restore_params_yaml(project) -> None:
    root, env, _ = project
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=root, check=True,
                               capture_output=True, text=True).stdout
    done = subprocess.run(["dvc", "exp", "run", "-n", "bad-lr", "-S", "optimizer.lr=0"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "optimizer.lr=0 is out of range" in output
    assert ("experiment bad-lr failed and params.yaml still holds its overrides: "
            "`git checkout params.yaml` restores the committed one") in output
    assert "lr: 0\n" in (root / "params.yaml").read_text()  # what the hint is about
    subprocess.run(["git", "checkout", "params.yaml"], cwd=root, check=True)
    assert (root / "params.yaml").read_text() == committed
