"""The user's own table (CSV or Excel): numeric features plus one target column.

Only numeric features are accepted; text categories would need an encoding decision that
belongs to the user, so they are rejected with the column and row that hold the text. Every
message names the user's own file (``shown``), not the copy the pipeline reads.

The table is read ``CHUNK_ROWS`` rows at a time into one float64 array sized up front (a CSV's
line count bounds its rows; a workbook says its size), so reading costs about that array and a
chunk, not a DataFrame of the whole table plus its copies: ~2x the float32 data, not ~8x
(``benchmarks/bench_csv_memory.py``).
"""

import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from scratchlab.core.errors import ConfigError, DataError
from scratchlab.data.cells import to_float_matrix

logger = logging.getLogger(__name__)

TASKS = ("classification", "regression")
CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
CHUNK_ROWS = 1 << 15
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


def _csv_chunks(path: Path, shown: Path) -> Iterator[pd.DataFrame]:
    """The CSV's rows in chunks (the first one even when there are no data rows)."""
    try:
        # index_col=False: never turn a first column silently into the index; pandas then
        # warns (and drops data) on rows longer than the header, which must be an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            with pd.read_csv(path, index_col=False, chunksize=CHUNK_ROWS) as reader:
                yield from reader
    except pd.errors.ParserWarning:
        raise DataError(
            f"{shown}: not a readable CSV table (rows have more fields than the header)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: empty file (expected a header row and data rows)") from None
    except UnicodeDecodeError:
        raise DataError(f"{shown}: not UTF-8 text (expected a CSV table)") from None
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        raise DataError(f"{shown}: not a readable CSV table ({_one_line(exc)})") from None


def _csv_rows(path: Path) -> int:
    """At most this many data rows: the file's line count (a quoted newline only adds one)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:  # noqa: PTH123
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _excel_chunks(path: Path, sheet: str | None, shown: Path) -> tuple[int, Iterator]:
    """A workbook's row count bound and its rows in chunks, streamed (openpyxl read-only)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    # openpyxl/zipfile raise many unrelated types on damaged input; any of them means the same.
    except Exception as exc:
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        raise DataError(f"{shown}: not a readable .xlsx workbook ({reason})") from None
    if sheet is not None and sheet not in book.sheetnames:
        found = ", ".join(repr(name) for name in book.sheetnames)
        book.close()
        raise DataError(f"{shown}: no sheet '{sheet}' (found sheets: {found})")
    worksheet = book[sheet] if sheet is not None else book.worksheets[0]
    return worksheet.max_row or CHUNK_ROWS, _sheet_chunks(book, worksheet, shown)


def _sheet_chunks(book, worksheet, shown: Path) -> Iterator[pd.DataFrame]:
    try:
        rows = (row for row in worksheet.iter_rows(values_only=True)
                if any(cell is not None for cell in row))  # blank rows, as pandas skips them
        header = list(next(rows, ()))
        while header and header[-1] is None:
            header.pop()
        if not header:
            raise DataError(f"{shown}: empty sheet (expected a header row and data rows)")
        columns = [f"Unnamed: {i}" if name is None else name for i, name in enumerate(header)]
        block: list[tuple] = []
        yielded = False
        for number, row in enumerate(rows, start=1):
            if any(cell is not None for cell in row[len(columns):]):  # as a CSV's long row
                raise DataError(f"{shown}: row {number} has a value right of the header's "
                                f"{len(columns)} columns (give that column a name)")
            block.append(row[: len(columns)])
            if len(block) == CHUNK_ROWS:
                yield pd.DataFrame(block, columns=columns)
                block, yielded = [], True
        if block or not yielded:
            yield pd.DataFrame(block, columns=columns)
    finally:
        book.close()


def _columns_text(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_SHOWN_COLUMNS])
    more = len(columns) - _SHOWN_COLUMNS
    return shown + (f" and {more} more" if more > 0 else "")


def _features(shown: Path, frame: pd.DataFrame, out: np.ndarray, first_row: int) -> None:
    """The chunk's features as floats into ``out``; the first bad cell is a DataError."""
    X, bad = to_float_matrix(frame)
    if bad is None:
        out[...] = X
        return
    name = frame.columns[bad.col]
    message = f"{shown}: column '{name}' row {first_row + bad.row + 1}: {bad.describe()}"
    column = frame.iloc[:, bad.col]
    if bad.problem == "not a number" and pd.to_numeric(column, errors="coerce").isna().all():
        message += " (text/categorical features are not supported; encode them as numbers)"
    raise DataError(message)


def _classes(shown: Path, target: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Class indices into the sorted unique target values (numerically sorted when numeric)."""
    name = target.name
    missing = np.flatnonzero(target.isna().to_numpy())
    if missing.size:
        raise DataError(f"{shown}: column '{name}' row {missing[0] + 1}: missing target value")
    numeric = pd.to_numeric(target, errors="coerce")
    if not numeric.isna().any() and target.dtype.kind != "b":
        values = numeric.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{shown}: column '{name}' row {row + 1}: {values[row]} is not finite")
        y, uniques = pd.factorize(values + 0.0, sort=True)  # + 0.0: -0.0 is the class 0.0
        integral = bool(np.all(uniques == np.round(uniques)))
        names = [str(int(u)) if integral else repr(float(u)) for u in uniques]
    else:
        y, uniques = pd.factorize(target.astype(str).to_numpy(), sort=True)
        names = [str(u) for u in uniques]
    if len(names) < 2:
        raise DataError(
            f"{shown}: column '{name}' has a single class {names[0]!r} in {len(y)} rows "
            "(classification needs at least 2)"
        )
    return y.astype(np.int64, copy=False), names


def _regression_target(shown: Path, target: pd.Series) -> np.ndarray:
    values, bad = to_float_matrix(target.to_frame())
    if bad is not None:
        raise DataError(
            f"{shown}: column '{target.name}' row {bad.row + 1}: {bad.describe()} "
            "(regression needs a numeric target)"
        )
    return values[:, 0]


def read_table(path: str | Path, target: str, task: str, sheet: str | None = None,
               shown: str | Path | None = None) -> Table:
    """Read a .csv/.xlsx table with a header row; every column but ``target`` is a feature.

    Messages name ``shown`` (the user's file, when ``path`` is the pipeline's copy of it), and
    number rows from 1 at the first data row (the header is not counted).
    """
    path = Path(path)
    shown = Path(shown) if shown is not None else path
    if task not in TASKS:
        raise ConfigError(f"data.task is {task!r} (expected 'classification' or 'regression')")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + EXCEL_SUFFIXES:
        raise DataError(f"{shown}: unsupported extension '{path.suffix}' (expected .csv or .xlsx)")
    if not path.is_file():
        raise DataError(f"{shown}: file not found (expected a .csv or .xlsx table)")
    if suffix in CSV_SUFFIXES:
        bound, chunks = _csv_rows(path), _csv_chunks(path, shown)
    else:
        bound, chunks = _excel_chunks(path, sheet, shown)
    first = next(chunks)
    columns = [str(c) for c in first.columns]
    duplicates = sorted(c for c, count in Counter(columns).items() if count > 1)
    if duplicates:
        raise DataError(f"{shown}: duplicate column names {_columns_text(duplicates)}")
    if target not in columns:
        raise DataError(
            f"{shown}: target column '{target}' not found (columns: {_columns_text(columns)})"
        )
    feature_names = [c for c in columns if c != target]
    if not feature_names:
        raise DataError(f"{shown}: no feature columns besides the target '{target}'")
    X = np.empty((bound, len(feature_names)), dtype=np.float64)
    targets, n = [], 0
    for chunk in chain([first], chunks):
        chunk.columns = columns
        if n + len(chunk) > len(X):  # a workbook that understated its size
            X.resize((2 * (n + len(chunk)), len(feature_names)), refcheck=False)
        _features(shown, chunk[feature_names], X[n : n + len(chunk)], n)
        targets.append(chunk[target])
        n += len(chunk)
    if n == 0:
        raise DataError(f"{shown}: no data rows below the header (expected at least one)")
    X.resize((n, len(feature_names)), refcheck=False)  # in place: no copy of the table
    target_column = pd.concat(targets, ignore_index=True)
    del targets, first, chunk
    if task == "classification":
        y, class_names = _classes(shown, target_column)
    else:
        y, class_names = _regression_target(shown, target_column), []
    logger.debug("read %s: %d rows, %d features", shown, *X.shape)
    return Table(X=X, y=y, feature_names=feature_names, class_names=class_names)
