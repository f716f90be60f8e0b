"""``scratchlab reproduce RUN_ID``: re-run a logged run with the code, config and data it had.

The run's ``git_commit`` tag names the code: its tree is extracted (``git archive``, nothing in
the repository changes) into a temporary directory, and that tree's own pipeline commands
(its ``dvc.yaml``: preprocess, train, evaluate) run there with ``PYTHONPATH`` on its ``src/``,
so the old code runs, not today's. The logged ``config.yaml`` becomes its ``params.yaml``
(with the store pointed at a throwaway one inside the temp dir: nothing new is logged to the
project's store). The data are the raw files the logged manifest lists, found by sha256 in
this checkout (``data/raw``, ``data/cache``, the config's own paths) or fetched again by the
old code and checked against the run's ``dataset_sha256``. Weights and test metrics are then
compared with the logged ones, bit for bit.

A run whose code or data cannot be had is refused in one line (exit 6): no commit recorded,
a ``+dirty`` commit (uncommitted changes: that code exists nowhere), a commit this repository
does not hold, or data that no local file and no fetch can match.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scratchlab.data.download import file_digest
from scratchlab.errors import NotReproducibleError, TrackingError
from scratchlab.paths import project_root
from scratchlab.runs import dataset_digest

STAGES = ("preprocess", "train", "evaluate")  # fetch only when no local file matches
ENV_KEYS = ("numpy", "blas", "blas_version", "blas_kernel", "blas_threads", "cpu")
STAGE_TIMEOUT_S = 3600


@dataclass
class LoggedRun:
    """What the store holds about the run: identity, code, config, data, results."""

    run_id: str
    entry_point: str
    commit: str
    dataset_sha256: str
    config: dict[str, Any]
    manifest: dict[str, Any]
    weights: Path
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """The comparison: max abs differences (0.0 everywhere means identical) and where."""

    weight_diff: float
    weight_where: str
    metric_diff: float
    metric_where: str
    n_values: int
    metric_names: list[str]
    notes: list[str]

    @property
    def identical(self) -> bool:
        return self.weight_diff == 0.0 and self.metric_diff == 0.0

    def summary(self) -> str:
        if self.identical:
            return (f"identical: weights ({self.n_values:,} values) and test metrics "
                    f"({', '.join(self.metric_names)}) bit for bit")
        return (f"differs: weights max abs difference {self.weight_diff:.3g} "
                f"({self.weight_where}); test metrics max abs difference "
                f"{self.metric_diff:.3g} ({self.metric_where})")


def load_logged_run(run_id: str, work: Path) -> LoggedRun:
    """The run's tags, config, manifest, weights (downloaded into ``work``) and test metrics."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(f"run {run_id}: not found in the store") from exc
    tags = dict(run.data.tags)
    commit, digest = tags.get("git_commit", "unknown"), tags.get("dataset_sha256")
    if commit == "unknown":
        raise NotReproducibleError(f"run {run_id}: no git commit recorded (made outside a git "
                                   "checkout); its code cannot be checked out")
    if commit.endswith("+dirty"):
        raise NotReproducibleError(f"run {run_id}: made from uncommitted changes "
                                   f"(git_commit {commit}); that code exists in no commit")
    if not digest:
        raise NotReproducibleError(f"run {run_id}: no dataset_sha256 tag; its data cannot be "
                                   "identified")
    try:
        config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml",
                                                               str(work))).read_text())
        manifest = json.loads(Path(client.download_artifacts(run_id, "data/manifest.json",
                                                             str(work))).read_text())
        weights = Path(client.download_artifacts(run_id, "weights/model.npz", str(work)))
    except (MlflowException, OSError) as exc:
        raise NotReproducibleError(f"run {run_id} ({run.info.status}): config.yaml, "
                                   "data/manifest.json or weights/model.npz not logged") from exc
    if dataset_digest(manifest) != digest:
        raise NotReproducibleError(f"run {run_id}: its data/manifest.json does not hash to its "
                                   f"dataset_sha256 tag {digest[:12]}")
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    return LoggedRun(run_id, tags.get("entry_point", "?"), commit, digest, config, manifest,
                     weights, metrics, tags)


def checkout(commit: str, dest: Path, repo: Path | None = None) -> None:
    """The commit's tree, extracted into ``dest`` (the repository itself is left alone)."""
    repo = repo or project_root()
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo,
                           capture_output=True, timeout=30)
    if known.returncode != 0:
        raise NotReproducibleError(f"commit {commit[:12]}: not in the git repository at {repo} "
                                   "(fetch it first, e.g. git fetch --all)")
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo,
                             capture_output=True, check=True, timeout=120)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _candidates(name: str, data: Mapping[str, Any], root: Path) -> list[Path]:
    """Local files that may be the raw file ``name``: this checkout's raw and cache dirs, and
    the paths in the run's own data config (absolute, or relative to the root or cwd)."""
    found = [root / "data" / "raw" / name, *sorted((root / "data" / "cache").glob(f"*/{name}"))]
    values = [v for v in _leaves(data) if isinstance(v, str)]
    values += [os.environ.get("SCRATCHLAB_DATA_MIRROR", "")]
    for value in filter(None, values):
        for base in (root, Path.cwd()):
            path = base / Path(value).expanduser()
            found += [path, path / name]
    return [p for p in dict.fromkeys(found) if p.is_file()]


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, Mapping):
        return [leaf for v in node.values() for leaf in _leaves(v)]
    if isinstance(node, list | tuple):
        return [leaf for v in node for leaf in _leaves(v)]
    return [node]


def place_data(run: LoggedRun, tree: Path, root: Path | None = None) -> bool:
    """Copy the run's raw files (matched by sha256) into ``tree/data/raw`` with its manifest;
    False when some file has no local copy (the old code's fetch must get it)."""
    root = root or project_root()
    raw = tree / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, info in run.manifest["files"].items():
        match = next((p for p in _candidates(name, run.config.get("data", {}), root)
                      if file_digest(p) == info["sha256"]), None)
        if match is None:
            return False
        (raw / name).write_bytes(match.read_bytes())
    (raw / "manifest.json").write_text(json.dumps(run.manifest, indent=2, sort_keys=True) + "\n")
    return True


def _params(run: LoggedRun, store: str) -> dict[str, Any]:
    """The logged config, logging to the throwaway store, without progress bars or model."""
    config = json.loads(json.dumps(run.config))
    config.setdefault("tracking", {}).update(uri=store, log_model=False)
    config.setdefault("train", {})["progress"] = False
    return config


def rerun(run: LoggedRun, tree: Path) -> None:
    """Run the old tree's pipeline commands in it: its code, its interpreter path."""
    store = f"sqlite:///{tree / 'mlruns' / 'mlflow.db'}"
    (tree / "params.yaml").write_text(yaml.safe_dump(_params(run, store), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "SCRATCHLAB_ROOT": str(tree),
           "MLFLOW_TRACKING_URI": store}
    stages = yaml.safe_load((tree / "dvc.yaml").read_text())["stages"]
    wanted = STAGES if place_data(run, tree) else ("fetch", *STAGES)
    for name in wanted:
        command = stages[name]["cmd"].split()
        if command[0] == "python":
            command[0] = sys.executable
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=STAGE_TIMEOUT_S)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            if name == "fetch":
                raise NotReproducibleError(f"run {run.run_id}: no local file matches its data "
                                           f"(dataset_sha256 {run.dataset_sha256[:12]}) and "
                                           f"fetching failed: {last}")
            raise NotReproducibleError(f"run {run.run_id}: the {name} stage of commit "
                                       f"{run.commit[:12]} failed (exit {done.returncode}): "
                                       f"{last}")
        if name == "fetch":
            fetched = json.loads((tree / "data" / "raw" / "manifest.json").read_text())
            if dataset_digest(fetched) != run.dataset_sha256:
                raise NotReproducibleError(f"run {run.run_id}: no local file matches its data "
                                           f"(dataset_sha256 {run.dataset_sha256[:12]}) and "
                                           "the fetched files hash differently")


def compare(run: LoggedRun, tree: Path) -> Outcome:
    """Max abs differences of the weights and the test metrics, and the environment notes."""
    from scratchlab.numerics import TAG_PREFIX, numeric_environment

    with np.load(run.weights) as old, np.load(tree / "models" / "model.npz") as new:
        if sorted(old.files) != sorted(new.files):
            raise NotReproducibleError(f"run {run.run_id}: the re-run's weights have arrays "
                                       f"{sorted(new.files)}, the logged {sorted(old.files)}")
        diffs = {k: _max_diff(old[k], new[k]) for k in old.files}
        n_values = sum(old[k].size for k in old.files)
    metrics = json.loads((tree / "reports" / "metrics.json").read_text())
    mdiffs = {k: _max_diff(np.float64(v), np.float64(metrics.get(k, np.nan)))
              for k, v in run.metrics.items()}
    weight_where = max(diffs, key=diffs.__getitem__)
    metric_where = max(mdiffs, key=mdiffs.__getitem__, default="none")
    deterministic = run.tags.get(f"{TAG_PREFIX}deterministic", "true") == "true"
    here = numeric_environment(deterministic)
    notes = [f"note: the run had {TAG_PREFIX}{k}={run.tags[TAG_PREFIX + k]}, this re-run "
             f"{here.get(TAG_PREFIX + k)}" for k in ENV_KEYS
             if TAG_PREFIX + k in run.tags and run.tags[TAG_PREFIX + k] != here.get(TAG_PREFIX + k)]
    return Outcome(diffs[weight_where], weight_where, mdiffs.get(metric_where, 0.0),
                   metric_where, n_values, sorted(run.metrics), notes)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """0.0 only when bit-identical in value (shape and dtype too); inf when incomparable."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    return float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def reproduce(run_id: str, keep: Path | None = None, echo=print) -> Outcome:
    """Re-run ``run_id`` in a temporary directory (or ``keep``, left in place) and compare."""
    import mlflow

    from scratchlab.tracking.store import check_store, tracking_uri

    uri = tracking_uri()
    check_store(uri)
    mlflow.set_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as store.connect
    with tempfile.TemporaryDirectory(prefix="scratchlab-reproduce-") as tmp:
        work = Path(tmp)
        run = load_logged_run(run_id, work / "logged")
        tree = keep or work / "tree"
        tree.mkdir(parents=True, exist_ok=True)
        checkout(run.commit, tree)
        echo(f"run {run_id[:8]} ({run.entry_point}, commit {run.commit[:12]}, dataset "
             f"{run.config.get('data', {}).get('name')} {run.dataset_sha256[:12]}): re-running "
             f"that commit's code in {tree}")
        rerun(run, tree)
        return compare(run, tree)
