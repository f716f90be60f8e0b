"""IDX reading/writing: round trips, every malformation, and the real MNIST t10k files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED_MNIST
from scratchlab.core.errors import DataError
from scratchlab.data.idx import read_idx, read_idx_pair, write_idx

MNIST = SHARED_MNIST
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"no real MNIST files in {MNIST}"
)


def header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_every_dtype(tmp_path: Path, dtype: str, compress: bool) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "a.idx", array, gzip=compress)
    back = read_idx(tmp_path / "a.idx")
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert only_files(tmp_path) == ["a.idx"]


def test_gzip_is_detected_by_magic_not_extension(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "compressed.raw", array, gzip=True)
    write_idx(tmp_path / "plain.gz", array, gzip=False)
    assert (tmp_path / "compressed.raw").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed.raw"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)


def test_write_is_deterministic(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.int16).reshape(10, 10)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_empty_leading_dimension_is_valid(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(header(0x08, (0, 28, 28)))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "0 bytes is too short for an IDX header"),
        (b"\x00\x00\x08", "3 bytes is too short for an IDX header"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "bad IDX magic 0x0100"),
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "unknown IDX type code 0x07 (expected one of 0x08"),
        (b"\x00\x00\x08\x00", "IDX header declares 0 dimensions"),
        (
            b"\x00\x00\x08\x03" + b"\x00" * 5,
            "truncated IDX header (ndim=3 needs 16 bytes, found 9)",
        ),
        (header(0x08, (2, 3)) + b"\x00" * 5, "truncated IDX data (dims 2x3 uint8 need 6 bytes"),
        (header(0x0B, (4,)) + b"\x00" * 9, "trailing garbage after IDX data (dims 4 int16 need 8"),
        # Absurd dims must be rejected by arithmetic, not by trying to allocate them.
        (header(0x0E, (2**32 - 1,) * 4) + b"\x00" * 8, "truncated IDX data"),
        # Empty (a zero dim), yet too big for NumPy to shape: found by the fuzz test.
        (header(0x08, (0, 49339, 49339, 3788864211)), "are not a shape NumPy can hold"),
    ],
)
def test_malformed_files(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(header(0x08, (100,)) + bytes(100))[:-10])
    with pytest.raises(
        DataError, match=rf"^{path}: truncated gzip stream \(expected an IDX file\)$"
    ):
        read_idx(path)


@pytest.mark.parametrize("tail", [b"junk", b""])
def test_corrupt_gzip(tmp_path: Path, tail: bytes) -> None:
    good = gzip.compress(header(0x08, (100,)) + bytes(100))
    path = tmp_path / "x.gz"
    # Either garbage after the member or a damaged deflate stream/CRC.
    path.write_bytes(good + tail if tail else good[:12] + b"\xff" * 8 + good[20:])
    with pytest.raises(DataError, match=rf"^{path}: corrupt gzip stream .*expected an IDX file\)$"):
        read_idx(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.gz: file not found \(expected an IDX file\)"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match=rf"^{tmp_path}: cannot read"):
        read_idx(tmp_path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(3, dtype=np.int64), "cannot write dtype int64 as IDX"),
        (np.zeros(3, dtype=bool), "cannot write dtype bool as IDX"),
        (np.array(5, dtype=np.uint8), r"cannot write shape \(\) as IDX"),
    ],
)
def test_write_rejects_unsupported_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        write_idx(tmp_path / "out.gz", array)
    assert only_files(tmp_path) == []


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "out.gz"
    write_idx(path, np.arange(3, dtype=np.uint8))
    before = path.read_bytes()
    with pytest.raises(DataError):
        write_idx(path, np.zeros(3, dtype=np.uint64))
    assert path.read_bytes() == before and only_files(tmp_path) == ["out.gz"]


def test_pair_ok(tmp_path: Path) -> None:
    write_idx(tmp_path / "i.gz", np.zeros((5, 4, 3), dtype=np.uint8))
    write_idx(tmp_path / "l.gz", np.arange(5, dtype=np.uint8))
    images, labels = read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz")
    assert images.shape == (5, 4, 3) and labels.tolist() == [0, 1, 2, 3, 4]


def test_pair_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "images.gz", np.zeros((10, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "labels.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(
        DataError,
        match=rf"^{tmp_path}/labels.gz: 9 labels but {tmp_path}/images.gz holds 10 images$",
    ):
        read_idx_pair(tmp_path / "images.gz", tmp_path / "labels.gz")


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (
            np.zeros((4, 4), np.uint8),
            np.zeros(4, np.uint8),
            r"images.gz: holds uint8 with shape \(4, 4\)",
        ),
        (np.zeros((4, 2, 2), np.float32), np.zeros(4, np.uint8), "images.gz: holds float32"),
        (np.zeros((4, 2, 2), np.uint8), np.zeros((4, 1), np.uint8), "labels.gz: holds uint8 with"),
        (
            np.zeros((4, 2, 2), np.uint8),
            np.zeros(4, np.float64),
            "labels.gz: holds float64 .*integer",
        ),
    ],
)
def test_pair_wrong_shapes(
    tmp_path: Path, images: np.ndarray, labels: np.ndarray, message: str
) -> None:
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    with pytest.raises(DataError, match=message):
        read_idx_pair(tmp_path / "images.gz", tmp_path / "labels.gz")


@needs_mnist
def test_real_mnist_t10k() -> None:
    images, labels = read_idx_pair(
        MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
    )
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and counts[1] == 1135 and counts[5] == 892
    assert images.max() == 255 and images.min() == 0


@needs_mnist
def test_real_mnist_train_labels() -> None:
    labels = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and np.bincount(labels).sum() == 60000
