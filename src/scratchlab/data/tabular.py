"""The user's own table (CSV or Excel): numeric features plus one target column.

Only numeric features are accepted; text categories would need an encoding decision that
belongs to the user, so they are rejected with the column and row that hold the text.
"""

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scratchlab.core.errors import ConfigError, DataError
from scratchlab.data.cells import to_float_matrix

logger = logging.getLogger(__name__)

TASKS = ("classification", "regression")
CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_SHOWN_COLUMNS = 20


@dataclass(frozen=True)
class Table:
    """A validated table: X float64 (n, d); y int64 class indices or float64 targets."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]  # empty for regression


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # index_col=False: never turn a first column silently into the index; pandas then
        # warns (and drops data) on rows longer than the header, which must be an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False)
    except pd.errors.ParserWarning:
        raise DataError(
            f"{path}: not a readable CSV table (rows have more fields than the header)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (expected a header row and data rows)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (expected a CSV table)") from None
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({_one_line(exc)})") from None


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    frame = None
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            sheet_names = book.sheet_names
            if sheet is None or sheet in sheet_names:
                frame = pd.read_excel(book, sheet_name=sheet if sheet is not None else 0)
    # openpyxl/zipfile raise many unrelated types on damaged input; any of them means the same.
    except Exception as exc:
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        raise DataError(f"{path}: not a readable .xlsx workbook ({reason})") from None
    if frame is None:
        found = ", ".join(repr(name) for name in sheet_names)
        raise DataError(f"{path}: no sheet '{sheet}' (found sheets: {found})")
    if frame.shape[1] == 0:
        raise DataError(f"{path}: empty sheet (expected a header row and data rows)")
    return frame


def _read_frame(path: Path, sheet: str | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + EXCEL_SUFFIXES:
        raise DataError(f"{path}: unsupported extension '{path.suffix}' (expected .csv or .xlsx)")
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a .csv or .xlsx table)")
    return _read_csv(path) if suffix in CSV_SUFFIXES else _read_excel(path, sheet)


def _columns_text(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_SHOWN_COLUMNS])
    more = len(columns) - _SHOWN_COLUMNS
    return shown + (f" and {more} more" if more > 0 else "")


def _features(path: Path, frame: pd.DataFrame) -> np.ndarray:
    X, bad = to_float_matrix(frame)
    if bad is None:
        return X
    name = frame.columns[bad.col]
    message = f"{path}: column '{name}' row {bad.row + 1}: {bad.describe()}"
    column = frame.iloc[:, bad.col]
    if bad.problem == "not a number" and pd.to_numeric(column, errors="coerce").isna().all():
        message += " (text/categorical features are not supported; encode them as numbers)"
    raise DataError(message)


def _classes(path: Path, target: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Class indices into the sorted unique target values (numerically sorted when numeric)."""
    name = target.name
    missing = np.flatnonzero(target.isna().to_numpy())
    if missing.size:
        raise DataError(f"{path}: column '{name}' row {missing[0] + 1}: missing target value")
    numeric = pd.to_numeric(target, errors="coerce")
    if not numeric.isna().any() and target.dtype.kind != "b":
        values = numeric.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{path}: column '{name}' row {row + 1}: {values[row]} is not finite")
        uniques, y = np.unique(values, return_inverse=True)
        integral = bool(np.all(uniques == np.round(uniques)))
        names = [str(int(u)) if integral else repr(float(u)) for u in uniques]
    else:
        labels = target.astype(str).to_numpy()
        uniques, y = np.unique(labels, return_inverse=True)
        names = [str(u) for u in uniques]
    if len(names) < 2:
        raise DataError(
            f"{path}: column '{name}' has a single class {names[0]!r} in {len(y)} rows "
            "(classification needs at least 2)"
        )
    return y.astype(np.int64), names


def _regression_target(path: Path, target: pd.Series) -> np.ndarray:
    values, bad = to_float_matrix(target.to_frame())
    if bad is not None:
        raise DataError(
            f"{path}: column '{target.name}' row {bad.row + 1}: {bad.describe()} "
            "(regression needs a numeric target)"
        )
    return values[:, 0]


def read_table(path: str | Path, target: str, task: str, sheet: str | None = None) -> Table:
    """Read a .csv/.xlsx table with a header row; every column but ``target`` is a feature.

    Rows are numbered from 1 at the first data row (the header is not counted) in messages.
    """
    path = Path(path)
    if task not in TASKS:
        raise ConfigError(f"data.task is {task!r} (expected 'classification' or 'regression')")
    frame = _read_frame(path, sheet)
    columns = [str(c) for c in frame.columns]
    duplicates = sorted(c for c, count in Counter(columns).items() if count > 1)
    if duplicates:
        raise DataError(f"{path}: duplicate column names {_columns_text(duplicates)}")
    frame.columns = columns
    if target not in columns:
        raise DataError(
            f"{path}: target column '{target}' not found (columns: {_columns_text(columns)})"
        )
    feature_names = [c for c in columns if c != target]
    if not feature_names:
        raise DataError(f"{path}: no feature columns besides the target '{target}'")
    if frame.empty:
        raise DataError(f"{path}: no data rows below the header (expected at least one)")
    X = _features(path, frame[feature_names])
    if task == "classification":
        y, class_names = _classes(path, frame[target])
    else:
        y, class_names = _regression_target(path, frame[target]), []
    logger.debug("read %s: %d rows, %d features", path, *X.shape)
    return Table(X=X, y=y, feature_names=feature_names, class_names=class_names)
