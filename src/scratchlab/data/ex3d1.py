"""Andrew Ng's ex3 digits workbook (ex3d1.xlsx): 20x20 greyscale digits as spreadsheet rows.

Sheet ``X`` holds one image per row (400 floats, no header) and sheet ``y`` the matching label
(1..10, where 10 stands for the digit 0, a leftover of Octave's 1-based indexing). Each row is
the image flattened in column-major (Octave/Fortran) order: ``ex3d1_image`` undoes that.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl.utils import get_column_letter

from scratchlab.core.errors import DataError
from scratchlab.core.files import atomic_path
from scratchlab.data.cells import to_float_matrix

logger = logging.getLogger(__name__)

SIDE = 20
N_PIXELS = SIDE * SIDE
LABELS = range(1, 11)


def _cell(row: int, col: int) -> str:
    """Excel notation (``C7``) of a 0-based position in a header-less sheet."""
    return f"{get_column_letter(col + 1)}{row + 1}"


def _read_sheets(path: Path) -> dict[str, pd.DataFrame]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the ex3d1 .xlsx workbook)")
    try:
        sheets = pd.read_excel(path, sheet_name=None, header=None, engine="openpyxl")
    # openpyxl/zipfile raise many unrelated types on damaged input; any of them means the same.
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DataError(f"{path}: not a readable .xlsx workbook ({reason})") from None
    found = ", ".join(repr(name) for name in sheets) or "none"
    for name in ("X", "y"):
        if name not in sheets:
            raise DataError(f"{path}: missing sheet '{name}' (found sheets: {found})")
    return sheets


def _numbers(path: Path, frame: pd.DataFrame, sheet: str) -> np.ndarray:
    values, bad = to_float_matrix(frame)
    if bad is not None:
        raise DataError(f"{path}: sheet {sheet} cell {_cell(bad.row, bad.col)} {bad.describe()}")
    return values


def read_ex3d1(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the workbook as X float64 (n, 400) and raw labels y int64 (n,) in 1..10.

    Rows of X stay in their stored column-major order; labels stay 1..10 (``load_dataset``
    maps 10 to 0), so this function reports exactly what the file holds.
    """
    path = Path(path)
    sheets = _read_sheets(path)
    x_frame, y_frame = sheets["X"], sheets["y"]
    if x_frame.empty:
        raise DataError(f"{path}: sheet X is empty (expected n rows x {N_PIXELS} numbers)")
    if x_frame.shape[1] != N_PIXELS:
        raise DataError(
            f"{path}: sheet X has shape {x_frame.shape} (expected n x {N_PIXELS}: one 20x20 "
            "image per row)"
        )
    if y_frame.shape != (len(x_frame), 1):
        raise DataError(
            f"{path}: sheet y has shape {y_frame.shape} (expected {len(x_frame)} x 1: one label "
            "per row of sheet X)"
        )
    X = _numbers(path, x_frame, "X")
    labels = _numbers(path, y_frame, "y")[:, 0]
    bad = np.flatnonzero(
        (labels != np.round(labels)) | (labels < LABELS[0]) | (labels > LABELS[-1])
    )
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{path}: sheet y cell {_cell(row, 0)} holds {labels[row]:g} "
            "(expected an integer label 1..10, 10 meaning digit 0)"
        )
    logger.debug("read %s: %d images", path, len(X))
    return X, labels.astype(np.int64)


def ex3d1_image(row: np.ndarray) -> np.ndarray:
    """The 20x20 image of one X row, which Octave stored column by column (order="F")."""
    row = np.asarray(row)
    if row.size != N_PIXELS:
        raise DataError(f"ex3d1 image row has {row.size} values (expected {N_PIXELS})")
    return row.reshape(SIDE, SIDE, order="F")


def write_ex3d1(path: str | Path, X: np.ndarray, y: np.ndarray) -> None:
    """Write an ex3d1-style workbook (sheets X and y, no header/index), atomically.

    Contents are not validated, so tests can build deliberately broken workbooks with it; only
    the workbook structure is checked before it replaces ``path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            pd.DataFrame(X).to_excel(writer, sheet_name="X", header=False, index=False)
            pd.DataFrame(y).to_excel(writer, sheet_name="y", header=False, index=False)
        with pd.ExcelFile(tmp, engine="openpyxl") as book:
            if book.sheet_names != ["X", "y"]:
                raise DataError(f"{path}: written workbook has sheets {book.sheet_names}")
    logger.debug("wrote %s", path)
