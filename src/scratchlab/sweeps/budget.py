"""``--trials N`` is the study's total, whatever the number of workers.

:func:`budget` counts the trials that have a result (complete, pruned, failed and not retried)
plus those running or waiting; a worker starts a trial only while that count is below N, and
:func:`over_budget` re-checks by trial number after ``ask`` (Optuna numbers trials under a row
lock on the study, so numbers are exact), skipping the rare trial created by two workers at the
same instant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from scratchlab.sweeps.trial_attrs import SKIPPED

log = logging.getLogger("scratchlab")


@dataclass
class Budget:
    """How a study stands against its total: trials with a result, running, waiting."""

    done: int
    running: int
    waiting: int

    def room(self, total: int) -> bool:
        """Whether a worker may start a trial now (a queued retry always may)."""
        return self.waiting > 0 or self.done + self.running < total


def retried(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the trials that were queued again (``sweeps.retries``)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def _counts(trial: FrozenTrial, retried_numbers: set[int]) -> bool:
    if trial.user_attrs.get(SKIPPED):
        return False
    return not (trial.state == TrialState.FAIL and trial.number in retried_numbers)


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that are one of the N: not skipped, and not a failure that was retried."""
    numbers = retried(trials)
    return [t for t in trials if _counts(t, numbers)]


def budget(trials: Sequence[FrozenTrial]) -> Budget:
    mine = counted(trials)
    return Budget(
        done=sum(t.state.is_finished() for t in mine),
        running=sum(t.state == TrialState.RUNNING for t in mine),
        waiting=sum(t.state == TrialState.WAITING for t in mine),
    )


def over_budget(trials: Sequence[FrozenTrial], number: int, total: int) -> bool:
    """Whether trial ``number``, just created by ``ask``, lies past the study's total.

    A trial handed out from the queue (a retry, or one the user enqueued) never is: it is
    already one of the N. A fresh one is, when N counted trials came before it.
    """
    mine = next((t for t in trials if t.number == number), None)
    if mine is None or mine.params or "fixed_params" in mine.system_attrs:
        return False
    numbers = retried(trials)
    return sum(t.number < number and _counts(t, numbers) for t in trials) >= total


def skip(study: optuna.Study, trial: optuna.Trial, total: int) -> None:
    trial.set_user_attr(SKIPPED, f"the study already had {total} trials")
    study.tell(trial, state=TrialState.FAIL)
    log.info("trial %d not run: the study already has its %d trials", trial.number, total)


def tally(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """How the study's trials ended, for the final message."""
    standing, mine = budget(trials), counted(trials)
    return {
        "trials": standing.done,
        "pruned": sum(t.state == TrialState.PRUNED for t in mine),
        "failed": sum(t.state == TrialState.FAIL for t in mine),
        "retried": len(retried(trials)),
        "running": standing.running + standing.waiting,
    }
