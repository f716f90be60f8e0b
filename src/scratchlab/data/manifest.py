"""``manifest.json``: what the fetch step put in the raw directory, so loading can prove it.

The manifest records each raw file's sha256 and size plus where the data came from. DVC pins
it, and ``verify_manifest`` refuses files changed after the fetch, so a run never trains on
data other than the data its lock file names.
"""

import json
import logging
from pathlib import Path
from typing import Any

from scratchlab.core.errors import DataError
from scratchlab.core.files import atomic_path
from scratchlab.data.download import file_digest

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def write_manifest(
    raw_dir: Path, name: str, files: list[str], source: dict[str, Any]
) -> dict[str, Any]:
    """Hash ``files`` (names inside ``raw_dir``) and write the manifest atomically; return it."""
    entries = {
        fname: {"sha256": file_digest(raw_dir / fname), "bytes": (raw_dir / fname).stat().st_size}
        for fname in sorted(files)
    }
    manifest = {"name": name, "files": entries, "source": source}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    with atomic_path(raw_dir / MANIFEST) as tmp:
        tmp.write_text(text)
        if json.loads(tmp.read_text()) != manifest:
            raise DataError(f"{raw_dir / MANIFEST}: does not read back as written")
    logger.info("wrote %s (%s)", raw_dir / MANIFEST, ", ".join(entries))
    return manifest


def read_manifest(raw_dir: Path) -> dict[str, Any]:
    """The parsed manifest, checked to have the keys and types ``write_manifest`` gives it."""
    path = raw_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found (run the fetch stage first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable manifest ({reason}; re-run fetch)") from None
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("name"), str)
        or not isinstance(manifest.get("files"), dict)
        or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str)
            for e in manifest["files"].values()
        )
    ):
        raise DataError(f"{path}: expected keys 'name' and 'files' with sha256s (re-run fetch)")
    return manifest


def verify_manifest(raw_dir: Path, name: str, files: list[str]) -> dict[str, Any]:
    """Check the manifest names dataset ``name`` and that ``files`` still hash as recorded."""
    manifest = read_manifest(raw_dir)
    path = raw_dir / MANIFEST
    if manifest["name"] != name:
        raise DataError(
            f"{path}: holds dataset '{manifest['name']}', expected '{name}' (re-run fetch)"
        )
    for fname in files:
        entry = manifest["files"].get(fname)
        if entry is None:
            raise DataError(f"{path}: does not list {fname} (re-run fetch)")
        if not (raw_dir / fname).is_file():
            raise DataError(f"{raw_dir / fname}: missing, but {path} lists it (re-run fetch)")
        actual = file_digest(raw_dir / fname)
        if actual != entry["sha256"]:
            raise DataError(
                f"{raw_dir / fname}: sha256 is {actual}, {MANIFEST} records {entry['sha256']} "
                "(file changed after fetch; re-run fetch)"
            )
    return manifest
