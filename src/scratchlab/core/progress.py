"""Progress shown the way its reader sees it: a live bar on a terminal, log lines elsewhere.

A tqdm bar redraws itself with carriage returns, which a file (a CI log, ``nohup.out``, a DVC
queue log) keeps as one ever-growing line. So :func:`progress_bar` draws tqdm's bar only when
stderr is a terminal (or in a Jupyter kernel, where tqdm draws a widget); anywhere else it
returns a :class:`LogProgress`, which logs one line per step (``every_step``: an epoch) or one
at each tenth of the total (a download's bytes). Both take the calls the project makes:
``update``, ``set_postfix``, ``reset``, ``close``, ``total`` (pooch's progress-bar protocol).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

log = logging.getLogger("scratchlab.progress")

TENTHS = 10  # off a terminal, a line at each tenth of the total


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (tqdm.auto then draws a widget, not carriage returns)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def on_terminal() -> bool:
    """Whether a live bar can be drawn where stderr goes."""
    return _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


class LogProgress:
    """Progress as log lines: ``desc: 3/40 epoch, loss=0.41`` or ``desc: 30% of 26.4 MB``."""

    def __init__(self, total: float | None, desc: str, unit: str, every_step: bool) -> None:
        self.total, self.desc, self.unit, self.every_step = total, desc, unit, every_step
        self.n = 0
        self.peak = 0  # the largest ``n`` seen (pooch resets before its final update)
        self.postfix = ""
        self.logged = 0  # the last tenth (or step) logged, kept across ``reset``

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def update(self, n: float = 1) -> None:
        self.n += n
        self.peak = max(self.peak, self.n)
        if self.every_step:
            self.logged = self.n
            self._log(f"{self.n:g}/{self.total:g} {self.unit}" if self.total else
                      f"{self.n:g} {self.unit}")
        elif self.total:
            tenth = min(int(TENTHS * self.n / self.total), TENTHS)
            if tenth > self.logged:
                self.logged = tenth
                self._log(f"{TENTHS * tenth}% of {_size(self.total, self.unit)}")

    def reset(self, total: float | None = None) -> None:
        self.n = 0
        if total is not None:
            self.total = total

    def close(self) -> None:
        if not self.every_step and not self.total and self.peak:  # size unknown: one line
            self._log(f"{_size(self.peak, self.unit)} done")

    def _log(self, text: str) -> None:
        log.info("%s: %s%s", self.desc, text, f", {self.postfix}" if self.postfix else "")

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(n: float, unit: str) -> str:
    return tqdm.format_sizeof(n, "B", 1000) if unit == "B" else f"{n:g} {unit}"


def progress_bar(total: float | None, desc: str, unit: str = "it", *, enabled: bool = True,
                 every_step: bool = False) -> Any:
    """A tqdm bar on a terminal, a :class:`LogProgress` elsewhere, a silent bar when not
    ``enabled``. ``every_step`` logs each step off a terminal (epochs), else each tenth."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if on_terminal():
        return auto_tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B",
                         mininterval=0 if every_step else 0.1)
    return LogProgress(total, desc, unit, every_step)


def download_progress(name: str, enabled: bool = True) -> Any:
    """pooch's ``progressbar`` argument for downloading ``name``: True (pooch draws its tqdm
    bar) on a terminal, a :class:`LogProgress` logging each tenth elsewhere, False if off."""
    if not enabled:
        return False
    return True if on_terminal() else LogProgress(None, name, "B", every_step=False)


def quiet_library_bars() -> None:
    """Off a terminal, switch off the bars libraries draw by themselves (MLflow's artifact
    transfers), whose carriage returns would pile up in a log the same way."""
    if not on_terminal():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
