"""Interrupting ``scratchlab tune`` as people and schedulers do: Ctrl-C pressed again and again,
SIGTERM on top, at random moments; and a worker started in the background of a script, whose
SIGINT the shell set to ignored. First, in-process, the rules of ``core.signals`` that make it
work.

The interrupts come at gaps drawn from a seeded generator (the seed is the test's parameter),
so a failure names the sequence that caused it and runs it again.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from scratchlab.core.signals import (
    deferred_interrupts,
    interrupted,
    sigterm_as_interrupt,
    stopping,
)
from servers import wait_for
from test_sweep_support import env_for


def _wait_for_interrupt(timeout_s: float) -> None:
    """Run Python code (where signal handlers run) until KeyboardInterrupt or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sum(range(1000))


def test_a_second_interrupt_does_not_cut_short_the_code_handling_the_first() -> None:
    with sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for_interrupt(5)
        stopping()  # what ended_run does before ending its run KILLED
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for_interrupt(0.5)  # neither raised
    assert interrupted()


class _Finalizer:
    """Takes an interrupt inside ``__del__``, where Python drops any exception (as it does in
    the garbage collector's callbacks: SQLAlchemy's raised it there in 2 of 5 tries)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))  # the handler runs here, and its KeyboardInterrupt is dropped


def test_an_interrupt_dropped_on_its_way_is_raised_again() -> None:
    with sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            finalizer = _Finalizer()
            del finalizer
            _wait_for_interrupt(5)
        stopping()


def test_deferred_interrupts_hold_the_signal_and_keep_an_ignored_one_ignored() -> None:
    with pytest.raises(KeyboardInterrupt), deferred_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for_interrupt(0.2)  # held: the block runs to its end
        held = True
    assert held
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's SIGINT
    try:
        with sigterm_as_interrupt(), deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for_interrupt(0.2)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


START_S = 120  # a cold start (imports, a new store) on a busy machine
EXIT_S = 120
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _tune(tmp_path: Path, study: str, trials: int) -> list[str]:
    return [sys.executable, "-m", "scratchlab.cli", "tune", "--study", study, "--trials",
            str(trials), "--out", str(tmp_path / "out"), "train.epochs=40",
            "train.progress=false", "tracking.log_model=false"]


def _query(db: Path, sql: str) -> int:
    """A count read with plain sqlite3 (an MLflow client could race the worker creating the
    store's tables); 0 while the store or its tables do not exist yet."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute(sql).fetchone()[0]
    except sqlite3.Error:
        return 0


PARENT = "SELECT count(*) FROM tags WHERE key = 'sweep_role' AND value = 'parent'"
CHILD_RUNNING = ("SELECT count(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                 "WHERE tags.key = 'job_num' AND runs.status = 'RUNNING'")


def _runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_repeated_interrupts_end_every_run_of_the_worker_killed(tmp_path: Path,
                                                                seed: int) -> None:
    """1 to 4 interrupts (Ctrl-C or SIGTERM), the first 0-4 s after the study's parent run
    exists (setting up, inside a trial, between trials, reporting), then 0.05-1 s apart."""
    rng = random.Random(seed)
    db = tmp_path / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    worker = subprocess.Popen(_tune(tmp_path, "i", trials=3), cwd=tmp_path, env=env_for(uri),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sent = []
    try:
        wait_for(lambda: _query(db, PARENT), START_S, "the study's parent run",
                 alive=lambda: worker.poll() is None)
        time.sleep(rng.uniform(0.0, 4.0))  # the random moment of the first interrupt
        for i in range(rng.randint(1, 4)):
            if i:
                time.sleep(rng.uniform(0.05, 1.0))
            if worker.poll() is not None:
                break
            sig = rng.choice(SIGNALS)
            worker.send_signal(sig)
            sent.append(signal.Signals(sig).name)
        out, _ = worker.communicate(timeout=EXIT_S)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 130, f"{sent}\n{out}"

    runs = _runs(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"], f"{sent}\n{out}"
    [parent] = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert parent.info.status == "KILLED", f"{sent}\n{out}"
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {k.info.status for k in kids} <= {"FINISHED", "KILLED"}, f"{sent}\n{out}"

    # Optuna: nothing left RUNNING, and an interrupted trial queued again exactly once
    trials = optuna.load_study(study_name="i",
                               storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}").trials
    assert not [t for t in trials if t.state == TrialState.RUNNING], f"{sent}\n{out}"
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    retries = [t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING]
    assert sorted(retries) == failed, f"{sent}\n{out}"
    assert len(failed) <= 1, f"{sent}\n{out}"


@pytest.mark.slow
def test_a_background_worker_ignores_the_sigint_its_shell_ignored(tmp_path: Path) -> None:
    """``scratchlab tune ... &`` in a script: the shell sets SIGINT to ignored for the job, so a
    Ctrl-C meant for the script (here: SIGINT every 20 ms, at most 500) must not stop it."""
    db = tmp_path / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    command = " ".join(f"'{arg}'" for arg in _tune(tmp_path, "bg", trials=2))
    shell = subprocess.Popen(["sh", "-c", f"{command} & echo $!; wait $!"], cwd=tmp_path,
                             env=env_for(uri), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        pid = int(shell.stdout.readline())
        wait_for(lambda: _query(db, CHILD_RUNNING), START_S, "a trial's run",
                 alive=lambda: shell.poll() is None)
        for _ in range(500):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        out, _ = shell.communicate(timeout=EXIT_S)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert shell.returncode == 0, out
    assert "study bg: 2 trials (2 run by this worker)" in out
    runs = _runs(uri)
    assert {r.info.status for r in runs} == {"FINISHED"}, out
