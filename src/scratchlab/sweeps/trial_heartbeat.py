"""The heartbeat of a running Optuna trial: the one place scratchlab uses Optuna's private API.

Why private: Optuna runs a trial's heartbeat thread only inside ``Study.optimize``; its
ask-and-tell interface has none (optuna issue #3293, closed without a public API). ``scratchlab
tune`` drives trials with ask and tell, because it must check the study's budget after ``ask``
(a trial created past ``--trials`` is skipped), hold interrupts around the storage writes, and
queue an interrupted trial again exactly once (only when its own ``tell`` went through). So it
starts, beside each trial, the same thread ``Study.optimize`` does, from
``optuna.storages._heartbeat``, with the trial's storage id. ``tests/test_tune_workers.py``
checks that the beats reach the storage, so an Optuna upgrade that moves these names fails a
fast test rather than a study.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread


@contextlib.contextmanager
def trial_heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Beat for ``trial`` while the block runs (nothing when the storage has no heartbeat)."""
    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield
