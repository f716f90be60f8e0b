"""Turn a DataFrame of spreadsheet/CSV cells into floats, locating the first cell that is not one.

Shared by the Excel and table readers so both point at the exact offending cell instead of
failing later with an unexplained NaN.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BadCell:
    """A cell that is not a finite number, by 0-based position in the frame."""

    row: int
    col: int
    value: object
    problem: str  # "missing", "not a number" or "not finite"

    def describe(self) -> str:
        """``'abc' is not a number``, ``inf is not finite``, ``is empty``: the end of a message."""
        if self.problem == "missing":
            return "is empty (expected a number)"
        shown = self.value if isinstance(self.value, int | float) else repr(self.value)
        return f"{shown} is {self.problem}"


def _column_floats(column: pd.Series) -> np.ndarray:
    """float64 values of a column, NaN wherever a cell does not parse as a number."""
    if column.dtype.kind in "Mm":  # dates would otherwise turn silently into nanoseconds
        return np.full(len(column), np.nan)
    numeric = pd.to_numeric(column, errors="coerce")
    return np.asarray(numeric.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)


def to_float_matrix(frame: pd.DataFrame) -> tuple[np.ndarray, BadCell | None]:
    """Return the frame as a float64 (rows, cols) array and its first bad cell in reading order."""
    if frame.shape[1] == 0:
        return np.empty((len(frame), 0)), None
    values = np.column_stack([_column_floats(frame.iloc[:, j]) for j in range(frame.shape[1])])
    missing = frame.isna().to_numpy()
    bad = missing | ~np.isfinite(values)
    if not bad.any():
        return values, None
    row, col = (int(i) for i in np.argwhere(bad)[0])
    raw = frame.iat[row, col]
    if missing[row, col]:
        problem = "missing"
    elif np.isnan(values[row, col]):
        problem = "not a number"
    else:
        problem = "not finite"
        raw = float(values[row, col])
    return values, BadCell(row, col, raw, problem)
