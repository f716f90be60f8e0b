"""Interrupts (issue 18, case 3): any number of Ctrl-C/SIGTERM, at any moment, end every run
the process owns (a study's parent included) KILLED before it exits 130; an ignored SIGINT
(a background job, ``nohup``) stays ignored.

Before: a second Ctrl-C landing while the first one's cleanup ended the runs (the comparison
on the parent takes a second or two) stopped that cleanup half-way, leaving the parent RUNNING
in 4 of 9 tries of 3 interrupts 0.15-1 s apart; and a SIGINT set to ignored still stopped a
worker at its next write to the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from scratchlab.core.signals import deferred_interrupts, sigterm_as_interrupt
from scratchlab.tracking.store import connect
from servers import wait_for
from test_sweep_support import env_for


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0)  # the handler runs between bytecodes of the main thread: let it


@pytest.fixture
def sigint_handler():
    """Whatever a test does to SIGINT's handler is undone."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def test_nested_deferred_blocks_hold_interrupts_until_the_outermost_ends(
        sigint_handler) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            with deferred_interrupts():  # e.g. mlflow.end_run inside the code ending a run
                _signal_self(signal.SIGINT)
                reached.append("inner")
            _signal_self(signal.SIGINT)  # an impatient user's second Ctrl-C
            reached.append("outer")
    assert reached == ["inner", "outer"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored(sigint_handler) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with sigterm_as_interrupt(), deferred_interrupts():
        _signal_self(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # and nothing was raised


TUNE = ["-m", "scratchlab.cli", "tune", "--study", "s", "--trials", "2",
        "train.epochs=40", "train.progress=false", "tracking.log_model=false"]


def _start_tune(tmp_path: Path, ignore_sigint: bool = False) -> tuple[subprocess.Popen, str]:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    connect(uri, "scratchlab")  # the store exists before this test reads it beside the worker

    def ignore() -> None:  # what a shell does to a background job's SIGINT
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    worker = subprocess.Popen([sys.executable, *TUNE, "--out", str(tmp_path / "out")],
                              cwd=tmp_path, env=env_for(uri), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              preexec_fn=ignore if ignore_sigint else None)
    client = MlflowClient(tracking_uri=uri)
    wait_for(lambda: client.search_runs(
                 [e.experiment_id for e in client.search_experiments()],
                 "tags.job_num = '0' and attributes.status = 'RUNNING'"),
             120, "a trial's run to be RUNNING", alive=lambda: worker.poll() is None, poll_s=0.2)
    return worker, uri


def _runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_repeated_interrupts_at_random_gaps_leave_no_run_running(tmp_path: Path,
                                                                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    worker, uri = _start_tune(tmp_path)
    try:
        for gap in rng.uniform(0.15, 1.0, size=int(rng.integers(2, 5))):  # 2 to 4 interrupts
            if worker.poll() is not None:
                break
            worker.send_signal(signal.SIGINT)
            time.sleep(gap)  # the interrupts' timing is the input here, not a synchronisation
        out, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 130, out
    runs = _runs(uri)
    assert sorted((r.data.tags.get("sweep_role", "child"), r.info.status) for r in runs) == [
        ("child", "KILLED"), ("parent", "KILLED")], out


@pytest.mark.slow
def test_a_worker_whose_sigint_is_ignored_is_not_interrupted_by_it(tmp_path: Path) -> None:
    worker, uri = _start_tune(tmp_path, ignore_sigint=True)
    try:
        for _ in range(30):  # over a second of training: some land inside a store write
            worker.send_signal(signal.SIGINT)
            time.sleep(0.05)  # the signals' timing is the input here, not a synchronisation
        out, _ = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out
    assert sorted(r.info.status for r in _runs(uri)) == ["FINISHED"] * 3, out
