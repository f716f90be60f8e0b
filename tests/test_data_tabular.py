"""read_table: CSV and Excel tables, classification and regression, and every error path."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scratchlab.core.errors import ConfigError, DataError
from scratchlab.data.tabular import Table, read_table


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "t.csv", "age,height,target\n30,1.8,b\n40,1.6,a\n50,1.7,b\n60,1.9,c\n"
    )


def test_classification_csv(good_csv: Path) -> None:
    table = read_table(good_csv, target="target", task="classification")
    assert isinstance(table, Table)
    assert table.X.dtype == np.float64 and table.X.shape == (4, 2)
    assert table.feature_names == ["age", "height"]
    assert table.class_names == ["a", "b", "c"]
    assert table.y.dtype == np.int64 and table.y.tolist() == [1, 0, 1, 2]


def test_numeric_classes_sort_numerically(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "x,y\n1,10\n2,2\n3,1\n4,2.0\n")
    table = read_table(path, target="y", task="classification")
    assert table.class_names == ["1", "2", "10"] and table.y.tolist() == [2, 1, 0, 1]


def test_target_column_can_sit_anywhere(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "y,a,b\n1.5,1,2\n2.5,3,4\n")
    table = read_table(path, target="y", task="regression")
    assert table.feature_names == ["a", "b"] and table.class_names == []
    assert table.y.dtype == np.float64 and table.y.tolist() == [1.5, 2.5]
    np.testing.assert_array_equal(table.X, [[1, 2], [3, 4]])


def test_excel_first_and_named_sheet(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"f": [1, 2], "t": ["x", "y"]}).to_excel(writer, sheet_name="A", index=False)
        pd.DataFrame({"g": [5.0, 6, 7], "t": [0.5, 1, 2]}).to_excel(
            writer, sheet_name="B", index=False
        )
    first = read_table(path, target="t", task="classification")
    assert first.feature_names == ["f"] and first.class_names == ["x", "y"]
    second = read_table(path, target="t", task="regression", sheet="B")
    assert second.X[:, 0].tolist() == [5, 6, 7] and second.y.tolist() == [0.5, 1, 2]
    with pytest.raises(DataError, match=r"t.xlsx: no sheet 'C' \(found sheets: 'A', 'B'\)$"):
        read_table(path, target="t", task="regression", sheet="C")


@pytest.mark.parametrize(
    ("text", "target", "task", "message"),
    [
        (
            "a,b\n1,2\n",
            "target",
            "classification",
            r"target column 'target' not found \(columns: 'a', 'b'\)",
        ),
        (
            "target\n1\n2\n",
            "target",
            "classification",
            "no feature columns besides the target 'target'",
        ),
        ("a,target\n", "target", "classification", "no data rows below the header"),
        (
            "age,t\n1,0\n" * 1 + "abc,1\n",
            "t",
            "classification",
            r"column 'age' row 2: 'abc' is not a number",
        ),
        (
            "a,age,t\n1,2,0\n" + "1,2,1\n" * 15 + "1,abc,0\n",
            "t",
            "regression",
            r"column 'age' row 17: 'abc' is not a number$",
        ),
        (
            "a,t\n1,0\n,1\n",
            "t",
            "classification",
            r"column 'a' row 2: is empty \(expected a number\)",
        ),
        ("a,t\n1,0\ninf,1\n", "t", "classification", "column 'a' row 2: inf is not finite"),
        ("a,t\n1,0\n-inf,1\n", "t", "classification", "column 'a' row 2: -inf is not finite"),
        ("a,t\n1,x\n2,\n", "t", "classification", "column 't' row 2: missing target value"),
        ("a,t\n1,1\n2,inf\n", "t", "classification", "column 't' row 2: inf is not finite"),
        (
            "a,t\n1,x\n2,x\n",
            "t",
            "classification",
            r"column 't' has a single class 'x' in 2 rows \(classification needs at least 2\)",
        ),
        (
            "a,t\n1,1.5\n2,high\n",
            "t",
            "regression",
            r"column 't' row 2: 'high' is not a number \(regression needs a numeric target\)",
        ),
        ("a,t\n1,1.5\n2,\n", "t", "regression", "column 't' row 2: is empty"),
        ("a,t\n1,1.5\n2,nan\n", "t", "regression", "column 't' row 2: is empty"),
        (
            "a,b\n1,2,3\n4,5,6\n",
            "b",
            "regression",
            r"not a readable CSV table \(rows have more fields than the header\)",
        ),
        (
            "a,b\n1,2\n4,5,6\n",
            "b",
            "regression",
            r"not a readable CSV table \(Error tokenizing data",
        ),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, target: str, task: str, message: str) -> None:
    path = write_csv(tmp_path / "t.csv", text)
    with pytest.raises(DataError, match=message) as info:
        read_table(path, target=target, task=task)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_duplicate_headers(tmp_path: Path) -> None:
    # pandas renames repeated CSV headers itself; headers equal only as text must be refused.
    path = write_csv(tmp_path / "t.csv", "a,a,t\n1,2,3\n4,5,6\n")
    assert read_table(path, "t", "regression").feature_names == ["a", "a.1"]
    book = tmp_path / "d.xlsx"
    pd.DataFrame([[1, 2, 3]], columns=[1, "1", "t"]).to_excel(book, index=False)
    with pytest.raises(DataError, match=r"d.xlsx: duplicate column names '1'$"):
        read_table(book, "t", "regression")


def test_categorical_column_gets_a_hint(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "color,t\nred,0\nblue,1\n")
    with pytest.raises(DataError, match="'red' is not a number .*categorical features are not"):
        read_table(path, target="t", task="classification")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.csv: file not found \(expected a .csv or .xlsx"):
        read_table(tmp_path / "nope.csv", "t", "classification")
    with pytest.raises(DataError, match=r"t.json: unsupported extension '.json'"):
        read_table(write_csv(tmp_path / "t.json", "{}"), "t", "classification")
    with pytest.raises(DataError, match=r"e.csv: empty file \(expected a header row"):
        read_table(write_csv(tmp_path / "e.csv", ""), "t", "classification")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"a,t\n\xff\xfe,1\n")
    with pytest.raises(DataError, match=r"b.csv: not UTF-8 text"):
        read_table(binary, "t", "classification")
    broken = tmp_path / "x.xlsx"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match=r"x.xlsx: not a readable .xlsx workbook \("):
        read_table(broken, "t", "classification")


def test_empty_excel_sheet(tmp_path: Path) -> None:
    path = tmp_path / "e.xlsx"
    pd.DataFrame().to_excel(path, index=False, engine="openpyxl")
    with pytest.raises(DataError, match="e.xlsx: empty sheet"):
        read_table(path, "t", "classification")


def test_unknown_task_is_a_config_error(good_csv: Path) -> None:
    with pytest.raises(ConfigError, match="data.task is 'clustering'"):
        read_table(good_csv, target="target", task="clustering")


def test_many_columns_are_abbreviated(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(30))
    path = write_csv(tmp_path / "w.csv", header + "\n" + ",".join("0" * 30) + "\n")
    with pytest.raises(DataError, match=r"'c19' and 10 more\)$"):
        read_table(path, "t", "classification")


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 3 rows: every table below spans several (the reader streams big tables)."""
    import scratchlab.data.tabular as tabular

    monkeypatch.setattr(tabular, "CHUNK_ROWS", 3)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_table_read_in_chunks_is_the_same_table(tmp_path: Path, small_chunks,
                                                  suffix: str) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=10), "t": list("xyzxyzxyzx"),
                          "b": rng.integers(0, 9, 10)})
    path = tmp_path / f"t{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_excel(path, index=False)
    table = read_table(path, "t", "classification")
    whole = pd.read_csv(path) if suffix == ".csv" else pd.read_excel(path)  # at once
    np.testing.assert_array_equal(table.X, whole[["a", "b"]].to_numpy(dtype=np.float64))
    assert table.y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0] and table.X.flags.owndata
    assert table.class_names == ["x", "y", "z"] and table.feature_names == ["a", "b"]


def test_rows_are_numbered_across_chunks(tmp_path: Path, small_chunks) -> None:
    path = write_csv(tmp_path / "t.csv", "a,t\n" + "1,0\n" * 7 + "oops,1\n" + "2,1\n")
    with pytest.raises(DataError, match=r"column 'a' row 8: 'oops' is not a number$"):
        read_table(path, "t", "classification")
    path = write_csv(tmp_path / "u.csv", "a,t\n" + "1,0\n" * 7 + "2,\n")
    with pytest.raises(DataError, match=r"column 't' row 8: missing target value$"):
        read_table(path, "t", "classification")


def test_messages_name_the_file_given_as_shown(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    copy = write_csv(tmp_path / "cache" / "t.csv", "a,t\n1,0\n")
    with pytest.raises(DataError, match=r"^/home/me/t.csv: target column 'label' not found"):
        read_table(copy, "label", "classification", shown="/home/me/t.csv")


def test_an_excel_value_right_of_the_header_is_an_error_not_dropped(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    for row in (["a", "t"], [1, 0], [None, None], [2, 1, 5]):  # a blank row is skipped
        book.active.append(row)
    book.save(tmp_path / "w.xlsx")
    with pytest.raises(DataError, match=r"w.xlsx: row 2 has a value right of the header's 2 "
                                        r"columns \(give that column a name\)$"):
        read_table(tmp_path / "w.xlsx", "t", "classification")
