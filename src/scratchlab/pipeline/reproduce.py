"""``scratchlab reproduce RUN_ID``: train a logged run again from its own code, config and
data, in a temporary directory, and compare weights and test metrics with what it logged.

The run says what made it: the ``git_commit`` tag (the code), the ``config.yaml`` artifact (every
config value), the ``data/manifest.json`` artifact and ``dataset_sha256`` tag (the raw files).
That commit's own pipeline stages run on that config (``python -m scratchlab.stages.*`` with the
commit's ``src/`` first on the path), so a run made by ``dvc repro`` and one made by the Hydra
app reproduce the same way, and nothing is logged to the project's store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from scratchlab.core.errors import ScratchlabError, TrackingError
from scratchlab.core.paths import project_root

STAGES = ("fetch", "preprocess", "train", "evaluate")
STAGE_TIMEOUT_S = 3600


class NotReproducible(ScratchlabError):
    """The run cannot be re-run: its code, config or data is not available."""

    exit_code = 6


@dataclass
class Reproduction:
    """How the re-run compares: max |difference| of the weights and of each test metric."""

    run_id: str
    commit: str
    weight_diff: float
    metric_diffs: dict[str, float] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return self.weight_diff == 0.0 and not any(self.metric_diffs.values())


def dataset_digest(manifest: dict) -> str:
    """The ``dataset_sha256`` tag of a manifest (as ``runs.dataset_tags`` computes it)."""
    files = manifest.get("files", {})
    return hashlib.sha256(
        "".join(f"{name}:{info['sha256']};" for name, info in sorted(files.items())).encode()
    ).hexdigest()


def reproduce(run_id: str) -> Reproduction:
    """Re-run ``run_id`` from its commit, config and data; raise NotReproducible if one of
    them is not available."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from scratchlab.tracking.uri import tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow.MlflowClient(tracking_uri())
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(f"run {run_id}: not in the store {tracking_uri()}") from exc
    commit = run.data.tags.get("git_commit", "unknown")
    _check_commit(run_id, commit)
    with tempfile.TemporaryDirectory(prefix="scratchlab-reproduce-") as name:
        tmp = Path(name)
        logged = {}
        for artifact in ("config.yaml", "data/manifest.json", "weights/model.npz"):
            try:
                logged[artifact] = Path(client.download_artifacts(
                    run_id, artifact, str(tmp / "logged" / Path(artifact).parent)))
            except (MlflowException, OSError) as exc:
                raise NotReproducible(f"run {run_id}: no {artifact} artifact to re-run from "
                                      f"({type(exc).__name__})") from None
        tree = _checkout(commit, tmp / "tree")
        manifest = json.loads(logged["data/manifest.json"].read_text())
        _seed_raw_data(manifest, tree / "data" / "raw")
        _write_params(logged["config.yaml"], tree / "params.yaml")
        _run_stages(run_id, tree, tmp / "store", STAGES[:1])
        fetched = json.loads((tree / "data" / "raw" / "manifest.json").read_text())
        if dataset_digest(fetched) != run.data.tags.get("dataset_sha256"):  # before training
            raise NotReproducible(f"run {run_id}: its data (dataset_sha256 "
                                  f"{run.data.tags.get('dataset_sha256', '?')[:12]}) is not "
                                  f"available; the fetch gave {dataset_digest(fetched)[:12]}")
        _run_stages(run_id, tree, tmp / "store", STAGES[1:])
        weight_diff = _max_diff(logged["weights/model.npz"], tree / "models" / "model.npz")
        metrics = json.loads((tree / "reports" / "metrics.json").read_text())
    diffs = {key: abs(value - run.data.metrics[key]) for key, value in metrics.items()
             if key in run.data.metrics}
    return Reproduction(run_id, commit, weight_diff, diffs)


def _git(*args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=project_root(), stdout=stdout,
                          stderr=subprocess.PIPE, timeout=120)


def _check_commit(run_id: str, commit: str) -> None:
    if commit in ("", "unknown"):
        raise NotReproducible(f"run {run_id}: no git commit recorded (made outside a git "
                              "checkout); its code cannot be recovered")
    if commit.endswith("+dirty"):
        raise NotReproducible(f"run {run_id}: made from uncommitted changes to "
                              f"{commit.removesuffix('+dirty')[:12]}; only committed code can "
                              "be re-run")
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise NotReproducible(f"run {run_id}: commit {commit[:12]} is not in this repository "
                              f"({project_root()}); fetch it first")


def _checkout(commit: str, tree: Path) -> Path:
    """The commit's files (no .git) in ``tree``."""
    tree.mkdir(parents=True)
    archive = tree.parent / "code.tar"
    with open(archive, "wb") as out:
        done = _git("archive", "--format=tar", commit, stdout=out)
    if done.returncode != 0:
        raise NotReproducible(f"commit {commit[:12]}: git archive failed "
                              f"({done.stderr.decode(errors='replace').strip()})")
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _seed_raw_data(manifest: dict, raw_dir: Path) -> None:
    """Copy the local files whose sha256 the manifest records (data/raw, data/cache) into the
    re-run's raw directory, with the manifest, so its fetch verifies instead of downloading."""
    root = project_root() / "data"
    candidates = [p for p in [*root.glob("raw/*"), *root.glob("cache/*/*")] if p.is_file()]
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, info in manifest.get("files", {}).items():
        for path in candidates:
            if path.name == name and path.stat().st_size == info.get("bytes"):
                if hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"]:
                    shutil.copyfile(path, raw_dir / name)
                    break
    (raw_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _write_params(logged_config: Path, params: Path) -> None:
    """The logged config as the re-run's params.yaml, tracked nowhere that matters."""
    config = yaml.safe_load(logged_config.read_text())
    config.setdefault("tracking", {}).update({"uri": None, "log_model": False})
    config.setdefault("train", {})["progress"] = False
    params.write_text(yaml.safe_dump(config, sort_keys=False))


def _run_stages(run_id: str, tree: Path, store: Path, stages: tuple[str, ...]) -> None:
    """Run the commit's own stage commands (from its ``dvc.yaml``) in ``tree``, its ``src/``
    first on the path, logging to the throwaway ``store``."""
    commands = {name: stage["cmd"] for name, stage in
                yaml.safe_load((tree / "dvc.yaml").read_text())["stages"].items()}
    env = {**os.environ, "SCRATCHLAB_ROOT": str(tree),
           "PYTHONPATH": os.pathsep.join([str(tree / "src"), os.environ.get("PYTHONPATH", "")]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    for stage in stages:
        argv = shlex.split(commands[stage])
        if argv[0] == "python":  # the interpreter scratchlab runs in, whatever is on PATH
            argv[0] = sys.executable
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=STAGE_TIMEOUT_S)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise NotReproducible(f"run {run_id}: its {stage} stage failed when re-run "
                                  f"(exit {done.returncode}): {last}")


def _max_diff(logged: Path, rerun: Path) -> float:
    with np.load(logged) as a, np.load(rerun) as b:
        if set(a.files) != set(b.files):
            return float("inf")
        return max((float(np.max(np.abs(a[k].astype(np.float64) - b[k]), initial=0.0))
                    if a[k].shape == b[k].shape else float("inf") for k in a.files), default=0.0)
