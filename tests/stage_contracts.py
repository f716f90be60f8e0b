"""The code each DVC stage runs: the static import closure of its entry module, as folders.

Every ``import`` statement counts, at module level or inside a function (a lazy import runs
when the stage does), except those under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so those count too. A stage lists each top-level
package its closure enters as one folder (``src/scratchlab/nn``: DVC hashes the whole folder)
and each module of the package root as a file, so the deps stay few while any file the stage
runs is covered, and a package it never enters is not a dep. Run this file to print the deps
``dvc.yaml`` should list (``--write`` puts them there): ``python tests/stage_contracts.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "scratchlab"


def module_file(name: str) -> Path | None:
    """The source file of project module ``name`` (a module or a package's __init__)."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Project modules named by the import statements of one file."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(node)
        for stmt in ast.walk(tree)
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
        for child in stmt.body
        for node in ast.walk(child)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # submodules imported
    return {name for name in found
            if name.split(".")[0] == PACKAGE and (module_file(name) or SRC.joinpath(
                *name.split(".")).is_dir())}


def closure(entry: str) -> set[Path]:
    """Every project source file importing ``entry`` can run, relative to the repo."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        path = module_file(name)
        if path is not None:  # None: a namespace package (a folder without __init__.py)
            todo += sorted(_imports(path, name))
    return {module_file(name).relative_to(REPO) for name in seen if module_file(name)}


def dep_units(files: set[Path]) -> set[Path]:
    """The deps covering ``files``: a root module itself, else its top-level package folder."""
    root = Path("src") / PACKAGE
    return {path if path.parent == root else root / path.relative_to(root).parts[0]
            for path in files}


def stage_entries(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, str]:
    """stage name -> the module its ``cmd`` runs with ``python -m``."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    entries = {}
    for name, stage in stages.items():
        match = re.fullmatch(r"python -m ([\w.]+)", stage["cmd"].strip())
        assert match, f"stage {name}: cmd is not `python -m <module>`: {stage['cmd']}"
        entries[name] = match.group(1)
    return entries


def code_deps(stage: dict) -> set[Path]:
    """The source files and folders a dvc.yaml stage lists as deps."""
    return {Path(d) for d in stage.get("deps", []) if str(d).startswith("src/")}


def rewrite(dvc_yaml: Path = REPO / "dvc.yaml") -> str:
    """``dvc.yaml`` with each stage's ``src/`` deps replaced by its closure (comments kept)."""
    entries, out = stage_entries(dvc_yaml), []
    stage, pending = None, []
    for line in dvc_yaml.read_text().splitlines():
        match = re.fullmatch(r"  (\w+):", line)
        stage = match.group(1) if match else stage
        if pending and not line.startswith("      - "):  # the deps list ended: code goes last
            out, pending = out + pending, []
        if line.strip().startswith("- src/"):
            continue
        out.append(line)
        if stage in entries and line.strip() == "deps:":
            units = dep_units(closure(entries[stage]))
            pending = [f"      - {path}" for path in sorted(map(str, units))]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        (REPO / "dvc.yaml").write_text(rewrite())
    for stage, entry in stage_entries().items():
        print(f"{stage}:")
        for path in sorted(dep_units(closure(entry))):
            print(f"      - {path}")
