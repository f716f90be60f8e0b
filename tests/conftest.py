"""Fixtures: real stores in temp dirs, an MLflow server, the real data files when ../shared has
them, and the test tiers. Shared functions live in helpers.py and servers.py.

Tiers: a test that starts a process of ours (Python, dvc, mlflow, scratchlab) is marked
``slow``, one that starts a server ``server``; ``pytest -m "not slow and not server"`` is the
fast in-process tier. An unmarked test that starts such a process fails, so the tiers stay
honest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

import servers
from helpers import REPO, SCRATCH_ROOT, SHARED_MNIST, checkout_files
from servers import MlflowServer
from slurm import ClusterServers, SlurmCluster, cancel_all, slurm_missing

OUR_PROGRAMS = {"python", "python3", "dvc", "mlflow", "scratchlab"}
_CHECKOUT = pytest.StashKey[dict]()


# The longest units of work (an xdist group runs on one worker, in one go), measured in a full
# run: started first, so that a two-worker run does not end with one worker alone on them
LONGEST_FIRST = ("slurm", "test_pipeline_dvc", "scaleout_servers", "test_experiments",
                 "test_tracking_model", "test_dvc_remotes")
LONG_FILES = ("test_tutorial.py", "test_reliability.py", "test_reliability_outage.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, shortest last (the classic rule for two machines sharing jobs): the long
    groups, then the other tests that start processes, then the fast in-process tier, which
    fills the gaps at the end."""
    def rank(item: pytest.Item) -> tuple[int, int]:
        group = item.get_closest_marker("xdist_group")
        name = group.args[0] if group and group.args else None
        if name in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(name)
        if item.path.name in LONG_FILES:
            return 1, LONG_FILES.index(item.path.name)
        slow = item.get_closest_marker("slow") or item.get_closest_marker("server")
        return (2, 0) if slow else (3, 0)

    items.sort(key=rank)  # stable: the files' own order within a rank


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note every file of the checkout (size, mtime) before the first test runs."""
    if not hasattr(session.config, "workerinput"):  # once, in the xdist controller
        session.config.stash[_CHECKOUT] = checkout_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests left the checkout otherwise than they found it: tests write
    into ``tmp_path`` (git-ignored folders such as ``mlruns/`` and ``data/`` count too)."""
    before = session.config.stash.get(_CHECKOUT, None)
    if before is None:
        return
    after = checkout_files()
    changed = sorted(path for path in before.keys() | after.keys()
                     if before.get(path) != after.get(path))
    if not changed:
        return
    shown = "\n  ".join(changed[:20]) + (f"\n  ... {len(changed) - 20} more"
                                          if len(changed) > 20 else "")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (f"the tests changed {len(changed)} file(s) in the checkout {REPO} "
               f"(write into tmp_path instead):\n  {shown}")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", "the checkout changed", red=True)
        reporter.write_line(message, red=True)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _tiers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail an unmarked (fast-tier) test the moment it starts one of our programs."""
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("server"):
        yield
        return
    real_init = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        program = Path(str(args[0] if isinstance(args, list | tuple) else args).split()[0]).name
        if program in OUR_PROGRAMS or program == Path(sys.executable).name:
            raise AssertionError(
                f"{request.node.nodeid} starts `{program}`: mark it @pytest.mark.slow "
                "(or server), the fast tier runs in-process"
            )
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield


@pytest.fixture(scope="session", autouse=True)
def _scratch_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project root every test (and every process it starts) sees: a temp folder holding a
    link to the checkout's ``conf/``. What the code writes under the project root (the data
    cache, the default MLflow store, the spool, Optuna's default storage) lands there, never in
    the checkout."""
    root = tmp_path_factory.mktemp("project")
    (root / "conf").symlink_to(REPO / "conf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SCRATCH_ROOT, str(root))
        yield root


@pytest.fixture
def shared_mnist() -> Path:
    """The official t10k IDX files from ../shared/data/mnist (skip when absent)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store in a temp dir, for this process and its children."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


# CI explores the same fuzz examples every run (a failure there is reproducible); local runs
# keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A started :class:`MlflowServer` in ``tmp_path/server``, stopped after the test."""
    directory = tmp_path / "server"
    directory.mkdir()
    server = MlflowServer(directory)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One single-node Slurm cluster on loopback for the session (tests/slurm.py); skipped
    without Slurm. Stopping it fails if anything it ran is left (the daemons' logs are kept)."""
    missing = slurm_missing()
    if missing:
        pytest.skip(missing)
    cluster = SlurmCluster(logs=tmp_path_factory.mktemp("slurm-logs"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session's Slurm cluster, idle when the test starts; the test's jobs cancelled after."""
    slurm_cluster.wait_idle()
    yield slurm_cluster
    cancel_all(slurm_cluster.conf)
    slurm_cluster.wait_idle()


@pytest.fixture(scope="session")
def slurm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """What a cluster's compute nodes reach, for the Slurm tests: PostgreSQL (databases
    ``mlflow`` and ``optuna``) on 127.0.0.1 and an ``mlflow server`` on it."""
    bin_dir = servers.pg_bin_dir()
    if bin_dir is None:
        pytest.skip(servers.PG_MISSING)
    root = tmp_path_factory.mktemp("slurm-servers")
    (root / "artifacts").mkdir()
    with servers.postgres(bin_dir) as pg:
        backend, storage = pg.create_database("mlflow"), pg.create_database("optuna")
        with servers.mlflow_server(backend, root / "artifacts",
                                   root / "mlflow-server.log") as url:
            yield ClusterServers(url, storage)
