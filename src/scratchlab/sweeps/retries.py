"""A trial run again with the same parameters, when its failure was not the parameters' fault.

Optuna's ``RetryHeartbeatStaleTrialCallback`` queues the copy (WAITING, same parameters, system
attributes ``failed_trial`` and ``retry_history``), up to ``--retries`` times per original
trial. A trial gets here two ways:

- its worker stopped beating (killed, its node lost): the storage fails it when another worker
  calls ``fail_stale_trials`` and calls :class:`Retries` for it, which then has the dead
  worker's MLflow run ended (``on_stale``);
- its worker was interrupted (Ctrl-C, or SIGTERM from a scheduler's time limit or preemption):
  the worker fails it itself and calls :meth:`Retries.requeue`, only when its own ``tell``
  went through, so a trial that another worker already took for dead is queued once, not twice.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from scratchlab.sweeps.trial_attrs import ATTEMPT, WORKER

log = logging.getLogger("scratchlab")

RETRIES = 1  # default --retries


class Retries:
    """Queue failed trials again, up to ``retries`` times each; the storage's stale-trial
    callback."""

    def __init__(self, retries: int = RETRIES,
                 on_stale: Callable[[FrozenTrial], None] | None = None) -> None:
        self.retries = retries
        self.on_stale = on_stale
        with warnings.catch_warnings():  # "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._queue = RetryHeartbeatStaleTrialCallback(max_retry=retries)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """``trial``'s worker stopped beating and the storage failed it."""
        log.warning("trial %d: worker %s stopped sending heartbeats; trial marked FAIL%s",
                    trial.number, trial.user_attrs.get(WORKER, "?"), self.requeue(study, trial))
        if self.on_stale is not None:
            self.on_stale(trial)

    def requeue(self, study: optuna.Study, trial: FrozenTrial) -> str:
        """Queue ``trial`` (FAIL) again with its parameters unless it ran out of retries;
        return how that went, for the log."""
        attempt = copy.deepcopy(trial)  # Optuna's callback appends to the retry history
        attempt.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._queue(study, attempt)
        copies = [t for t in study.get_trials(deepcopy=False,
                                              states=(TrialState.WAITING, TrialState.RUNNING))
                  if t.system_attrs.get("retry_history", [])[-1:] == [trial.number]]
        if not copies:
            return f" (not retried: --retries {self.retries})"
        history = copies[0].system_attrs["retry_history"]
        return f"; retry {len(history)} of {self.retries} queued with the same parameters"
