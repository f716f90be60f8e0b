"""Byte-for-byte reproducible ``.npz`` files, so DVC hashes change only when the arrays do.

``np.savez`` stamps every member with the current time; here each member gets a fixed 1980-01-01
timestamp and fixed permissions, and members keep the order they were passed in.
"""

import logging
import zipfile
from pathlib import Path

import numpy as np

from scratchlab.errors import DataError
from scratchlab.io import atomic_path

logger = logging.getLogger(__name__)

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz_deterministic(path: str | Path, /, **arrays: np.ndarray) -> None:
    """Save ``arrays`` to an uncompressed ``.npz`` (loadable by ``np.load``), atomically.

    The written file is re-opened and compared with the input before it replaces ``path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        with np.load(tmp, allow_pickle=False) as back:
            for name, array in arrays.items():
                array = np.asarray(array)
                loaded = back[name] if name in back else None
                if (
                    loaded is None
                    or loaded.dtype != array.dtype
                    or not np.array_equal(loaded, array, equal_nan=array.dtype.kind in "fc")
                ):
                    raise DataError(f"{path}: array '{name}' does not read back as written")
    logger.debug("wrote %s (%s)", path, ", ".join(arrays))
