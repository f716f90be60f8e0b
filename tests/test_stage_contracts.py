"""Each DVC stage depends on exactly the code it runs, and dvc.lock matches the sources.

In-process and fast; the behaviour these contracts buy (``dvc status`` naming exactly the
stages a code edit touches) is checked with real dvc in test_pipeline_dvc.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from stage_contracts import REPO, closure, code_deps, dep_units, rewrite, stage_entries

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
LOCK = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
FIX = "run `python tests/stage_contracts.py --write`, then `dvc repro`, and commit both files"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_its_import_closure(stage: str) -> None:
    needed = dep_units(closure(stage_entries()[stage]))
    listed = code_deps(STAGES[stage])
    assert not needed - listed, f"{stage} runs {sorted(map(str, needed - listed))} unlisted; {FIX}"
    assert not listed - needed, f"{stage} lists {sorted(map(str, listed - needed))}, unused; {FIX}"


def test_the_writer_keeps_dvc_yaml_as_it_is() -> None:
    assert rewrite() == (REPO / "dvc.yaml").read_text(), FIX


def test_closure_follows_lazy_imports_and_parent_packages() -> None:
    evaluate = closure("scratchlab.stages.evaluate")
    assert Path("src/scratchlab/tracking/model.py") in evaluate  # imported inside a function
    assert Path("src/scratchlab/pipeline/plots.py") in evaluate
    assert Path("src/scratchlab/spec/__init__.py") in evaluate  # a parent package
    train = closure("scratchlab.stages.train")
    assert Path("src/scratchlab/pipeline/evaluation.py") not in train
    # the dataset readers are fetch's and preprocess's; the engine is train's and evaluate's
    for stage in ("train", "evaluate"):
        assert not any(p.parts[2] == "data" for p in closure(f"scratchlab.stages.{stage}"))
    for stage in ("fetch", "preprocess"):
        assert not any(p.parts[2] == "nn" for p in closure(f"scratchlab.stages.{stage}"))
    assert Path("src/scratchlab/pipeline/training.py") not in closure("scratchlab.stages.evaluate")


def _md5(path: Path) -> str:
    """DVC's hash of a file, or of a folder (``<md5 of its sorted file list>.dir``, without what
    .dvcignore leaves out: ``__pycache__``)."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    listing = [{"md5": _md5(f), "relpath": f.relative_to(path).as_posix()}
               for f in sorted(path.rglob("*")) if f.is_file() and "__pycache__" not in f.parts]
    listing.sort(key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_lock_matches_the_code_and_params(stage: str) -> None:
    """dvc.lock on main pins today's sources: a fresh clone's repro reruns nothing it need not."""
    assert stage in LOCK, f"dvc.lock has no stage {stage}; {FIX}"
    locked = {d["path"]: d["md5"] for d in LOCK[stage]["deps"]}
    listed = [str(d) for d in STAGES[stage]["deps"]]
    assert sorted(locked) == sorted(listed), f"{stage}: dvc.lock deps differ from dvc.yaml; {FIX}"
    stale = [p for p in locked if p.startswith("src/") and locked[p] != _md5(REPO / p)]
    assert not stale, f"{stage}: dvc.lock pins older versions of {stale}; {FIX}"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in LOCK[stage].get("params", {}).get("params.yaml", {}).items():
        node = params
        for part in key.split("."):
            node = node[part]
        assert node == value, f"{stage}: dvc.lock has {key}={value!r}, params.yaml {node!r}; {FIX}"
