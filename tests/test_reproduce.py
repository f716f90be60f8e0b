"""``scratchlab reproduce``: a run made by the Hydra app re-runs from its logged commit, config
and data as ``identical`` (a ``dvc repro`` run too: test_pipeline_dvc.py, on its pipeline);
runs whose code or data cannot be had are refused in one line (exit 6); a re-run that differs
says by how much."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from conftest import copy_repo, project_env
from scratchlab.errors import NotReproducibleError
from scratchlab.reproduce import LoggedRun, checkout, compare, load_logged_run, place_data
from scratchlab.runs import dataset_digest

FAST = ["train.epochs=3", "train.progress=false", "tracking.log_model=false"]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A committed copy of the repo and the environment that runs our programs in it."""
    base = tmp_path
    repo = copy_repo(base / "repo")
    return repo, project_env(repo, f"sqlite:///{base / 'store' / 'mlflow.db'}")


def _run(command: list[str], repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)


def _reproduce(run_id: str, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run([str(Path(sys.executable).parent / "scratchlab"), "reproduce", run_id], repo, env)


@pytest.mark.slow
def test_a_hydra_app_run_reproduces_identically(project, tmp_path: Path) -> None:
    repo, env = project
    done = _run([sys.executable, "-m", "scratchlab.train", *FAST,
                 f"hydra.run.dir={tmp_path / 'out'}"], repo, env)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = json.loads((tmp_path / "out" / "run.json").read_text())["run_id"]
    done = _reproduce(run_id, repo, env)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"run {run_id[:8]} (hydra, commit ")
    assert lines[-1].startswith("identical: weights (7,510 values) and test metrics")


@pytest.mark.slow
def test_the_command_refuses_a_dirty_run_in_one_line(tracking_uri, tmp_path: Path) -> None:
    run_id = _logged(tracking_uri, tmp_path, "9" * 40 + "+dirty")
    done = subprocess.run([str(Path(sys.executable).parent / "scratchlab"), "reproduce", run_id],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 6 and done.stdout == ""
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].endswith(f"run {run_id}: made from uncommitted changes (git_commit "
                              f"{'9' * 40}+dirty); that code exists in no commit")


# In-process: refusals and the comparison, on runs written straight into a temp store.

def _logged(tracking_uri: str, tmp_path: Path, commit: str, digest: str | None = None) -> str:
    manifest = {"name": "digits", "files": {"digits.npz": {"sha256": "ab" * 32, "bytes": 1}}}
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())
    tags = {"git_commit": commit, "dataset_sha256": digest or dataset_digest(manifest)}
    run_id = client.create_run(experiment, tags=tags).info.run_id
    client.log_dict(run_id, {"data": {"name": "digits"}}, "config.yaml")
    client.log_dict(run_id, manifest, "data/manifest.json")
    np.savez(tmp_path / "model.npz", W=np.zeros(3, np.float32))
    client.log_artifact(run_id, str(tmp_path / "model.npz"), "weights")
    return run_id


@pytest.mark.parametrize("commit, digest, message", [
    ("unknown", None, "no git commit recorded"),
    ("0" * 40 + "+dirty", None, "made from uncommitted changes"),
    ("0" * 40, "f" * 64, "does not hash to its dataset_sha256 tag"),
])
def test_runs_without_their_code_or_data_are_refused(tracking_uri, tmp_path, commit, digest,
                                                     message) -> None:
    run_id = _logged(tracking_uri, tmp_path, commit, digest)
    with pytest.raises(NotReproducibleError, match=message):
        load_logged_run(run_id, tmp_path / "work")


def test_a_commit_the_repository_lacks_is_refused(tracking_uri, tmp_path) -> None:
    run = load_logged_run(_logged(tracking_uri, tmp_path, "0123abcd" * 5), tmp_path / "work")
    with pytest.raises(NotReproducibleError, match="commit 0123abcd0123: not in the git"):
        checkout(run.commit, tmp_path / "tree")
    assert NotReproducibleError.exit_code == 6


def test_data_is_matched_by_sha256_not_by_name(tracking_uri, tmp_path) -> None:
    run = load_logged_run(_logged(tracking_uri, tmp_path, "0" * 40), tmp_path / "work")
    root = tmp_path / "root"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "digits.npz").write_bytes(b"other bytes")
    assert not place_data(run, tmp_path / "tree", root)  # same name, other content: no match


def _outcome(tmp_path: Path, new_weights: np.ndarray, new_metrics: dict) -> object:
    tree = tmp_path / "tree"
    (tree / "models").mkdir(parents=True)
    np.savez(tmp_path / "old.npz", W=np.arange(4, dtype=np.float32))
    (tree / "reports").mkdir()
    np.savez(tree / "models" / "model.npz", W=new_weights)
    (tree / "reports" / "metrics.json").write_text(json.dumps(new_metrics))
    run = LoggedRun("r", "dvc", "c", "d", {}, {}, tmp_path / "old.npz",
                    {"test_accuracy": 0.5, "test_loss": 0.25})
    return compare(run, tree)


def test_the_comparison_is_bit_for_bit(tmp_path) -> None:
    same = _outcome(tmp_path / "a", np.arange(4, dtype=np.float32),
                    {"test_accuracy": 0.5, "test_loss": 0.25})
    assert same.identical and same.summary().startswith("identical: weights (4 values)")
    nudged = np.arange(4, dtype=np.float32)
    nudged[2] = np.nextafter(nudged[2], np.float32(9))
    other = _outcome(tmp_path / "b", nudged, {"test_accuracy": 0.5, "test_loss": 0.25 + 1e-12})
    assert not other.identical
    assert other.weight_diff == pytest.approx(2.38e-7, rel=0.01) and other.weight_where == "W"
    assert other.metric_where == "test_loss"
    assert other.summary().startswith("differs: weights max abs difference 2.38e-07 (W)")


def test_the_logged_config_is_what_the_old_code_reads(tracking_uri, tmp_path) -> None:
    """params.yaml of the re-run: the logged config, logging to the throwaway store only."""
    from scratchlab.reproduce import _params

    run = LoggedRun("r", "dvc", "c", "d", yaml.safe_load("train: {seed: 3}\ntracking: {}"), {},
                    tmp_path, {})
    params = _params(run, "sqlite:///x.db")
    assert params["train"] == {"seed": 3, "progress": False}
    assert params["tracking"] == {"uri": "sqlite:///x.db", "log_model": False}


def test_only_edits_to_code_make_a_commit_dirty(tmp_path, monkeypatch) -> None:
    """dvc.lock and params.yaml are rewritten by the pipeline itself (dvc repro, dvc exp run
    -S): a run made then is still the commit's code, and reproducible."""
    from conftest import GIT_ENV
    from scratchlab.paths import git_commit

    for name in ("dvc.lock", "params.yaml", "code.py"):
        (tmp_path / name).write_text("a\n")
    env = {**GIT_ENV, "PATH": "/usr/bin:/bin"}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "c"]):
        subprocess.run(command, cwd=tmp_path, check=True, env=env)
    monkeypatch.setenv("SCRATCHLAB_ROOT", str(tmp_path))
    clean = git_commit()
    (tmp_path / "dvc.lock").write_text("b\n")
    (tmp_path / "params.yaml").write_text("b\n")
    assert git_commit() == clean and len(clean) == 40
    (tmp_path / "code.py").write_text("b\n")
    assert git_commit() == clean + "+dirty"
