"""The rules of the house, kept by a fast test so they outlive the issue that set them.

- The package root holds the entry points and at most ``MAX_ROOT_MODULES`` modules.
- No module is over ``MAX_LINES`` lines.
- Imports only go down: every package has a layer, and a module imports only its own package
  or packages on lower layers (imports inside functions count too, so none can dodge a cycle).
- The config never imports the engine (``scratchlab.nn``).
- Every package says in its ``__init__`` docstring what it is for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stage_contracts import REPO, SRC, _imports, closure, module_file

PACKAGE = SRC / "scratchlab"
MAX_ROOT_MODULES = 10
MAX_LINES = 300
# Lower numbers are lower floors. Packages on one floor do not import each other.
LAYERS = {
    "core": 0,
    "spec": 1,
    "config": 2, "data": 2, "nn": 2,
    "tracking": 3,
    "pipeline": 4,
    "stages": 5, "sweeps": 5,
    "api": 6, "cli": 6, "train": 6,  # the entry points
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _room(module: str) -> str | None:
    """The layer key of a module: its top-level package, or the root module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_root_holds_the_entry_points_and_few_modules() -> None:
    roots = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(roots) <= MAX_ROOT_MODULES, roots
    for name in roots:
        assert name == "__init__.py" or name[:-3] in LAYERS, f"{name}: a root module with no layer"


def test_every_package_has_a_layer_and_says_what_it_is_for() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        name = init.parent.name
        assert name in LAYERS, f"package {name}: add it to LAYERS in {__file__}"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: no docstring"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_the_line_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)}: {lines} lines (> {MAX_LINES})"


def test_imports_only_go_down() -> None:
    wrong = []
    for name, path in _modules().items():
        room = _room(name)
        if room is None:
            continue
        for target in _imports(path, name):
            other = _room(target)
            if other is None or other == room:
                continue
            if LAYERS[other] >= LAYERS[room]:
                wrong.append(f"{name} -> {target} ({room} {LAYERS[room]} -> {other} "
                             f"{LAYERS[other]})")
    assert not wrong, "imports that do not go down:\n" + "\n".join(wrong)


def test_no_import_circle_between_modules() -> None:
    modules = _modules()
    graph = {name: {t for t in _imports(path, name) if t in modules and t != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own modules is how packages work, not a circle
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(f"{t}.") or
                       modules[t].name != "__init__.py"}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_config_never_imports_the_engine() -> None:
    for entry in ("scratchlab.config", "scratchlab.stages.fetch", "scratchlab.stages.preprocess"):
        engine = [p for p in closure(entry) if p.parts[:3] == ("src", "scratchlab", "nn")]
        assert not engine, f"{entry} imports the engine: {engine}"
    assert module_file("scratchlab.config") is not None
