"""Save/load a network: ``<name>.npz`` (weights) next to ``<name>.json`` (its NetworkSpec).

The weights are written in sorted order by ``core.files.npz_bytes``, so the bytes are a pure
function of the weights (DVC and MLflow then see an unchanged model as unchanged). Both files
are written to temporary files in the target directory and moved into place with
``os.replace``, so a crash never leaves a torn file.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy

from scratchlab.core.errors import DataError, ScratchlabError
from scratchlab.core.files import RECOVER, npz_bytes
from scratchlab.nn.network import Network, build_network
from scratchlab.spec.network import NetworkSpec


def spec_path(path: str | os.PathLike) -> Path:
    """The architecture file that goes with the weights file ``path``."""
    return Path(path).with_suffix(".json")


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new temp file beside ``path`` (removed again if writing fails)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def save_network(net: Network, path: str | os.PathLike) -> None:
    """Write the weights to ``path`` (.npz) and the spec to the sibling ``.json``.

    Both files are complete on disk before either is moved into place, so a failure (disk
    full) leaves the previous pair, or nothing, never a torn or mismatched file. OS errors
    become a one-line ``ScratchlabError`` naming the path.
    """
    path = Path(path)
    spec = json.dumps(net.spec.to_dict(), indent=2, sort_keys=True) + "\n"
    temps: list[tuple[Path, Path]] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temps.append((_write_temp(path, npz_bytes(dict(sorted(net.state_dict().items())))), path))
        temps.append((_write_temp(spec_path(path), spec.encode()), spec_path(path)))
        for tmp, target in temps:
            os.replace(tmp, target)
    except OSError as exc:
        raise ScratchlabError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def load_network(path: str | os.PathLike, recover: str = RECOVER) -> Network:
    """The network saved at ``path``; a missing or damaged file is one DataError line naming it
    and how to get it back (``recover``: by default, from DVC)."""
    path = Path(path)
    spec_file = spec_path(path)
    try:
        spec = NetworkSpec.from_dict(json.loads(spec_file.read_text()))
    except FileNotFoundError:
        raise DataError(f"{spec_file}: not found ({recover})") from None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{spec_file}: not a readable network spec ({_reason(exc)}; "
                        f"{recover})") from None
    net = build_network(spec, numpy.random.default_rng(0))
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            state = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise DataError(f"{path}: not found ({recover})") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: damaged network weights ({_reason(exc)}; {recover})") from None
    try:
        net.load_state_dict(state)
    except DataError as exc:
        raise DataError(f"{path}: {exc} ({recover})") from None
    return net


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
