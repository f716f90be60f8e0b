"""The IDX format (MNIST and friends), parsed by hand so every malformation gets a clear error.

Layout: two zero bytes, a type-code byte, an ndim byte, ndim big-endian uint32 dimensions, then
the values big-endian in C order. Files may be gzip-compressed; that is detected from the
``1f 8b`` magic, not the extension, because mirrors rename files freely.
"""

import gzip as gz
import logging
import math
import zlib
from pathlib import Path

import numpy as np

from scratchlab.core.errors import DataError
from scratchlab.core.files import atomic_path

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in _TYPE_CODES.items()}
_MAX_DIM = 2**32 - 1


def _read_bytes(path: Path) -> bytes:
    """Return the file's IDX payload, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (expected an IDX file)") from None
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read ({exc.strerror or exc}; expected an IDX file)"
        ) from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gz.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: truncated gzip stream (expected an IDX file)") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip stream ({exc}; expected an IDX file)") from None


def _shape_text(dims: tuple[int, ...], dtype: np.dtype) -> str:
    return f"dims {'x'.join(map(str, dims))} {dtype.newbyteorder('=').name}"



def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array of the declared dtype and shape.

    The payload length must match the header exactly: a short file is reported as truncated and
    a long one as trailing garbage, both before anything is allocated from the header's dims.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header (expected 4+)")
    if data[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: bad IDX magic 0x{data[:2].hex()} (expected 0x0000, then type code and ndim)"
        )
    code, ndim = data[2], data[3]
    if code not in _TYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in _TYPE_CODES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if ndim < 1:
        raise DataError(f"{path}: IDX header declares 0 dimensions (expected at least 1)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header (ndim={ndim} needs {header} bytes, found {len(data)})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPE_CODES[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX data ({_shape_text(dims, dtype)} need {expected} bytes, "
            f"found {found})"
        )
    if found > expected:
        raise DataError(
            f"{path}: trailing garbage after IDX data ({_shape_text(dims, dtype)} need "
            f"{expected} bytes, found {found})"
        )
    try:
        array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    except ValueError as exc:  # e.g. (0, 50000, 50000, 4e9): empty, yet too big to shape
        raise DataError(f"{path}: IDX dims {dims} are not a shape NumPy can hold ({exc})") from exc
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, gzip: bool = True) -> None:
    """Write ``array`` as IDX (gzip-compressed by default), atomically and verified by re-reading.

    The gzip header's mtime is fixed at 0, so the same array always gives the same bytes.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(
            f"{path}: cannot write dtype {array.dtype} as IDX "
            "(expected uint8, int8, int16, int32, float32 or float64)"
        )
    if array.ndim < 1 or array.ndim > 255 or any(d > _MAX_DIM for d in array.shape):
        raise DataError(
            f"{path}: cannot write shape {array.shape} as IDX (expected 1..255 dims < 2**32)"
        )
    payload = (
        bytes([0, 0, code, array.ndim])
        + np.asarray(array.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(array, dtype=_TYPE_CODES[code]).tobytes()
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(gz.compress(payload, mtime=0) if gzip else payload)
        back = read_idx(tmp)
        if back.shape != array.shape or not np.array_equal(
            back, array, equal_nan=back.dtype.kind == "f"
        ):
            raise DataError(f"{path}: written IDX file does not read back as the array written")
    logger.debug("wrote %s (%s %s)", path, array.dtype, array.shape)


def read_idx_pair(
    images_path: str | Path, labels_path: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Read an image/label IDX pair and check they fit together: (n, rows, cols) uint8 and (n,)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: holds {images.dtype} with shape {images.shape} "
            "(expected uint8 images of shape (n, rows, cols))"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{labels_path}: holds {labels.dtype} with shape {labels.shape} "
            "(expected integer labels of shape (n,))"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path}: {len(labels)} labels but {images_path} holds {len(images)} images"
        )
    return images, labels
