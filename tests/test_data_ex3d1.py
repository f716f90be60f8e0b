"""The ex3d1 workbook reader: layout, column-major images and every malformation."""

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scratchlab.core.errors import DataError
from scratchlab.data.ex3d1 import ex3d1_image, read_ex3d1, write_ex3d1


def workbook(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 400)), (np.arange(n) % 10 + 1).astype(np.int64)


def write_sheets(path: Path, sheets: dict[str, object]) -> None:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, data in sheets.items():
            pd.DataFrame(data).to_excel(writer, sheet_name=name, header=False, index=False)


def test_round_trip(tmp_path: Path) -> None:
    X, y = workbook()
    write_ex3d1(tmp_path / "ex.xlsx", X, y)
    X_back, y_back = read_ex3d1(tmp_path / "ex.xlsx")
    assert X_back.dtype == np.float64 and X_back.shape == (4, 400)
    assert y_back.dtype == np.int64 and y_back.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(X_back, X)
    assert [p.name for p in tmp_path.iterdir()] == ["ex.xlsx"]


def test_label_ten_is_kept_raw(tmp_path: Path) -> None:
    X, _ = workbook(2)
    write_ex3d1(tmp_path / "ex.xlsx", X, np.array([10, 1]))
    assert read_ex3d1(tmp_path / "ex.xlsx")[1].tolist() == [10, 1]


def test_image_is_column_major() -> None:
    # Octave stores column by column: the second stored value is row 1 of column 0.
    row = np.arange(400)
    image = ex3d1_image(row)
    assert image.shape == (20, 20)
    assert image[1, 0] == 1 and image[0, 1] == 20
    np.testing.assert_array_equal(image, row.reshape(20, 20).T)
    with pytest.raises(DataError, match="ex3d1 image row has 399 values"):
        ex3d1_image(np.zeros(399))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.xlsx: file not found \(expected the ex3d1"):
        read_ex3d1(tmp_path / "nope.xlsx")


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04 truncated zip"])
def test_not_an_xlsx(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ex.xlsx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{path}: not a readable .xlsx workbook \(") as info:
        read_ex3d1(path)
    assert "\n" not in str(info.value)


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "ex.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(DataError, match="not a readable .xlsx workbook"):
        read_ex3d1(path)


def test_missing_sheet(tmp_path: Path) -> None:
    X, _ = workbook()
    write_sheets(tmp_path / "ex.xlsx", {"X": X, "labels": np.ones(4)})
    with pytest.raises(DataError, match=r"missing sheet 'y' \(found sheets: 'X', 'labels'\)$"):
        read_ex3d1(tmp_path / "ex.xlsx")


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.zeros((4, 399)), np.ones(4), r"sheet X has shape \(4, 399\) \(expected n x 400"),
        (np.zeros((4, 400)), np.ones((4, 2)), r"sheet y has shape \(4, 2\) \(expected 4 x 1"),
        (np.zeros((4, 400)), np.ones(3), r"sheet y has shape \(3, 1\) \(expected 4 x 1"),
    ],
)
def test_wrong_shapes(tmp_path: Path, X: np.ndarray, y: np.ndarray, message: str) -> None:
    write_ex3d1(tmp_path / "ex.xlsx", X, y)
    with pytest.raises(DataError, match=message):
        read_ex3d1(tmp_path / "ex.xlsx")


def test_empty_sheet_x(tmp_path: Path) -> None:
    write_sheets(tmp_path / "ex.xlsx", {"X": [], "y": []})
    with pytest.raises(DataError, match="sheet X is empty"):
        read_ex3d1(tmp_path / "ex.xlsx")


def test_text_cell_is_located(tmp_path: Path) -> None:
    X, y = workbook(8)
    X = X.astype(object)
    X[6 - 1, 3 - 1] = "oops"  # Excel C6 (no header row)
    X[6, 0] = "later"  # A7: after C6 in reading order
    write_ex3d1(tmp_path / "ex.xlsx", X, y)
    with pytest.raises(DataError, match=r"ex.xlsx: sheet X cell C6 'oops' is not a number$"):
        read_ex3d1(tmp_path / "ex.xlsx")


def test_empty_cell_is_located(tmp_path: Path) -> None:
    X, y = workbook()
    X[1, 27] = np.nan  # column AB, row 2
    write_ex3d1(tmp_path / "ex.xlsx", X, y)
    with pytest.raises(DataError, match=r"sheet X cell AB2 is empty \(expected a number\)$"):
        read_ex3d1(tmp_path / "ex.xlsx")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([1, 2, 11, 3], r"sheet y cell A3 holds 11 \(expected an integer label 1..10"),
        ([0, 2, 1, 3], "sheet y cell A1 holds 0"),
        ([1, 2.5, 1, 3], "sheet y cell A2 holds 2.5"),
        ([1, 2, 3, "ten"], "sheet y cell A4 'ten' is not a number"),
        ([1, None, 3, 4], r"sheet y cell A2 is empty \(expected a number\)"),
    ],
)
def test_bad_labels(tmp_path: Path, labels: list, message: str) -> None:
    X, _ = workbook()
    write_ex3d1(tmp_path / "ex.xlsx", X, np.array(labels, dtype=object))
    with pytest.raises(DataError, match=message):
        read_ex3d1(tmp_path / "ex.xlsx")
