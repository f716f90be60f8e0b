"""Property tests: on any input the readers return valid arrays or raise DataError, nothing else."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchlab.core.errors import DataError
from scratchlab.data.idx import read_idx, write_idx
from scratchlab.data.tabular import read_table

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
TYPE_CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def read_idx_or_data_error(path: Path) -> np.ndarray | None:
    try:
        array = read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None
    assert isinstance(array, np.ndarray) and array.ndim >= 1 and array.dtype.isnative
    return array


@FUZZ
@given(data=st.binary(max_size=300), compress=st.booleans())
def test_read_idx_random_bytes(work: Path, data: bytes, compress: bool) -> None:
    path = work / "random.idx"
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    read_idx_or_data_error(path)


@st.composite
def idx_like(draw: st.DrawFn) -> bytes:
    """Plausible IDX bytes: header fields near the valid ones, payload near the right length."""
    code = draw(st.sampled_from([*TYPE_CODES, 0x00, 0x0A, 0xFF]))
    dims = draw(st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), min_size=0, max_size=4))
    header = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    size = int(np.prod(dims, dtype=object)) * 8 if dims else 0
    length = draw(st.integers(0, min(size, 400) + 16))
    return header + draw(st.binary(min_size=length, max_size=length))


@FUZZ
@given(data=idx_like(), cut=st.integers(0, 64), compress=st.booleans())
def test_read_idx_near_valid_files(work: Path, data: bytes, cut: int, compress: bool) -> None:
    if compress:
        blob = gzip.compress(data, mtime=0)
        data = blob[: len(blob) - cut] if cut % 2 else blob  # sometimes a truncated stream
    path = work / "near.idx"
    path.write_bytes(data)
    read_idx_or_data_error(path)


@FUZZ
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    compress=st.booleans(),
)
def test_idx_round_trip(
    work: Path, dtype: str, shape: list[int], seed: int, compress: bool
) -> None:
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    write_idx(work / "rt.idx", array, gzip=compress)
    back = read_idx(work / "rt.idx")
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


JUNK = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "abc", "1e400", "nan", "inf", " 3 ", "1,5", "True", '"', "\n", "0x10"]),
    st.text(max_size=5),
    st.none(),
)
NUMBER = st.one_of(st.integers(0, 3), st.integers(-(10**6), 10**6), st.floats(-1e3, 1e3))


@st.composite
def junk_table(draw: st.DrawFn) -> pd.DataFrame:
    """A small frame, usually with a target column; half of them are clean, to reach success."""
    features = draw(st.lists(st.sampled_from(["a", "b", "x y", "1", "a"]), max_size=3))
    columns = list(features)
    if draw(st.sampled_from([True] * 9 + [False])):
        columns.insert(draw(st.integers(0, len(features))), "target")
    cell = st.one_of(NUMBER, JUNK) if draw(st.booleans()) else NUMBER
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=8))
    return pd.DataFrame(rows, columns=columns, dtype=object)


@FUZZ
@given(frame=junk_table(), task=st.sampled_from(["classification", "regression"]))
def test_read_table_junk_cells(work: Path, frame: pd.DataFrame, task: str) -> None:
    path = work / "junk.csv"
    frame.to_csv(path, index=False)
    check_table(path, task)


@FUZZ
@given(data=st.binary(max_size=200), task=st.sampled_from(["classification", "regression"]))
def test_read_table_random_bytes(work: Path, data: bytes, task: str) -> None:
    path = work / "random.csv"
    path.write_bytes(data)
    check_table(path, task)


def check_table(path: Path, task: str) -> None:
    try:
        table = read_table(path, target="target", task=task)
    except DataError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    n = len(table.y)
    assert table.X.dtype == np.float64 and table.X.shape == (n, len(table.feature_names))
    assert np.isfinite(table.X).all()
    if task == "classification":
        assert table.y.dtype == np.int64 and len(table.class_names) >= 2
        assert 0 <= table.y.min() and table.y.max() < len(table.class_names)
    else:
        assert table.y.dtype == np.float64 and np.isfinite(table.y).all()
