"""One worker of a study: take trials while the study has room, run each beside its heartbeat,
tell the study how it ended; then wait for the trials still running elsewhere.

Every storage write of a trial's life (ask, tell, the attributes) happens with interrupts held
(``core.signals.deferred_interrupts``), so an interrupt can fall anywhere and still leave each
trial either told or failed and queued again: an interrupted trial (Ctrl-C, or SIGTERM from a
scheduler's time limit or preemption) is not the parameters' fault, so it is run again
(``sweeps.retries``), exactly once: only when this worker's own ``tell`` failed it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from scratchlab.core.errors import ScratchlabError
from scratchlab.core.owner import HEARTBEAT, owner_tags
from scratchlab.core.signals import (
    deferred_interrupts,
    interrupt_mark,
    interrupted_since,
    stopping,
)
from scratchlab.sweeps.budget import budget, over_budget, skip
from scratchlab.sweeps.retries import Retries
from scratchlab.sweeps.storage import fail_stale, has_heartbeat
from scratchlab.sweeps.study_parent import log_best
from scratchlab.sweeps.trial_attrs import OWNER, WORKER
from scratchlab.sweeps.trial_heartbeat import trial_heartbeat

log = logging.getLogger("scratchlab")

WAIT_POLL_S = 0.5  # an idle worker re-reads the study: cheap, and it picks up a retry at once


def worker_id() -> str:
    """``host:pid``: which worker ran a trial (user attribute ``worker``, run tag)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Worker:
    """Works on ``study`` until it has ``total`` trials, running ``job`` for each."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    total: int
    job: Callable[[optuna.Trial], float]
    retries: Retries
    parent_run_id: str
    name: str

    def work(self, poll_s: float = WAIT_POLL_S) -> int:
        """Take trials while the study has room; then wait for the trials still running
        elsewhere (heartbeat storages only), so that one whose worker dies is still failed and
        retried. Returns how many trials this worker ran."""
        waits = has_heartbeat(self.storage)
        ran, waiting_logged = 0, False
        while True:
            with deferred_interrupts():
                fail_stale(self.study)
                standing = budget(self.study.get_trials(deepcopy=False))
            if standing.room(self.total):
                if self.run_next():
                    ran += 1
                    with deferred_interrupts():
                        log_best(self.parent_run_id, self.study.get_trials(deepcopy=False))
                waiting_logged = False
                continue
            if not standing.running or not waits:
                return ran
            if not waiting_logged:
                log.info("study %s: %d trial(s) running on other workers; waiting for them "
                         "(a dead worker's trial is retried after its heartbeats stop)",
                         self.study.study_name, standing.running)
                waiting_logged = True
            time.sleep(poll_s)

    def run_next(self) -> bool:
        """Ask for a trial, run it, tell how it ended; False if it lay past the total."""
        trial, mark = None, interrupt_mark()
        try:
            with deferred_interrupts():  # asked is ours: marked before an interrupt can land
                with warnings.catch_warnings():  # the heartbeat runs beside the trial: below
                    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                    asked = self.study.ask()
                trial = asked
                if over_budget(self.study.get_trials(deepcopy=False), asked.number, self.total):
                    trial = None
                    skip(self.study, asked, self.total)
                    return False
                asked.set_user_attr(WORKER, self.name)
                asked.set_user_attr(OWNER, {k: v for k, v in owner_tags().items()
                                            if k != HEARTBEAT})
            with trial_heartbeat(self.study, trial):  # state None: COMPLETE, FAIL for a NaN
                value, state = self.job(trial), None
        except optuna.TrialPruned as pruned:
            log.info("trial %d %s", trial.number, pruned)
            value, state = None, TrialState.PRUNED
        except ScratchlabError as exc:  # recorded as a failed trial; the study goes on
            log.error("trial %d failed: %s", trial.number, exc)
            value, state = None, TrialState.FAIL
        except BaseException as exc:
            if trial is not None:
                self._abandon(trial, interrupted_since(mark, exc))
            raise
        with deferred_interrupts():
            # finished already if another worker took this one for dead (heartbeats held up)
            self.study.tell(trial, value, state=state, skip_if_finished=True)
        return True

    def _abandon(self, trial: optuna.Trial, error: BaseException) -> None:
        """``trial`` stopped without a result: FAIL it; if an interrupt stopped it, queue it
        again, provided this worker's ``tell`` is the one that failed it."""
        interrupted = isinstance(error, KeyboardInterrupt)
        if interrupted:
            stopping()
        with deferred_interrupts():
            try:
                failed = self.study.tell(trial, state=TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                # another worker failed it first, and queued it again: this worker was silent
                # past the heartbeat grace (suspended: scontrol suspend, gang scheduling)
                if interrupted:
                    log.warning("trial %d interrupted; another worker had already failed it "
                                "(and re-queued it within --retries) while this one was silent",
                                trial.number)
                return
            if interrupted:
                log.warning("trial %d interrupted; marked FAIL%s", trial.number,
                            self.retries.requeue(self.study, failed))
