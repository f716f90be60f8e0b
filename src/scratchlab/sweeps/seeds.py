"""Seeds for workers sharing a study: each trial's draws come from its own random stream.

:class:`TrialSeededSampler` seeds TPE from ``(train.seed, trial number)``. Trial numbers are
unique in a study, so no two workers, wherever they run, share a random stream, and a study run
by one worker is reproducible.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import optuna
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial


def trial_seed(base_seed: int, number: int) -> int:
    digest = hashlib.sha256(f"scratchlab-tune:{base_seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class TrialSeededSampler(BaseSampler):
    """TPE whose random stream is seeded per trial from ``(base_seed, trial number)``.

    Workers sharing a study never draw from the same stream (trial numbers are unique), and
    with ``constant_liar`` TPE treats trials still running elsewhere as bad, so concurrent
    workers spread out instead of proposing the same region.
    """

    def __init__(self, base_seed: int, **tpe_kwargs: Any) -> None:
        self.base_seed = base_seed
        self.tpe_kwargs = {"constant_liar": True, **tpe_kwargs}
        self._by_trial: dict[int, TPESampler] = {}

    def _tpe(self, trial: FrozenTrial) -> TPESampler:
        sampler = self._by_trial.get(trial.number)
        if sampler is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = TPESampler(seed=trial_seed(self.base_seed, trial.number),
                                     **self.tpe_kwargs)
            self._by_trial[trial.number] = sampler
        return sampler

    def infer_relative_search_space(self, study, trial):
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        sampler = self._by_trial.pop(trial.number, None)
        if sampler is not None:
            sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seed is a function of the trial: nothing to reseed
        pass
