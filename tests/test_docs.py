"""The documentation site builds with ``mkdocs build --strict``: no broken link, anchor or API
reference, the generated pages (CLI reference, exit codes, benchmark tables) render. And the
README stays the short entry it is meant to be, starting with the two fresh-machine commands
that .ci/run reads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from helpers import REPO


def _mkdocs() -> None:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        message = "mkdocs not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_the_site_builds_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _mkdocs()
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    monkeypatch.chdir(REPO)
    config = load_config(str(REPO / "mkdocs.yml"), strict=True, site_dir=str(tmp_path / "site"))
    build(config)  # raises mkdocs.exceptions.Abort on any warning under strict
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "scratchlab tune" in cli and "--trials" in cli and "NotReproducible" in cli
    bench = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    assert "benchmarks/results/bench_accuracy.json" in bench and "[[bench_" not in bench


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert {page for page in pages if page not in nav} == set()


def test_readme_is_a_short_entry_starting_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    assert len(readme) <= 150
    commands = [line for line in readme if line.startswith("python3 -m venv ")]
    assert len(commands) == 2 and commands[0].endswith("&& dvc repro")
    assert re.match(r"^python3 -m venv .*pytest", commands[1])  # what .ci/run runs
    assert readme.index(commands[0]) < 10  # the README starts with them


RECORD_KEYS = {"benchmark", "command", "date", "commit", "machine", "output", "results"}


@pytest.mark.parametrize("result", sorted((REPO / "benchmarks" / "results").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_recorded_benchmark_is_what_record_py_writes(result: Path) -> None:
    """The docs render these files: one written by hand (or by a benchmark itself) lacks the
    provenance the pages print and breaks the site build."""
    import json

    record = json.loads(result.read_text())
    assert RECORD_KEYS <= set(record), f"{result.name}: rerun python benchmarks/record.py"
    assert record["benchmark"] == result.stem and isinstance(record["results"], dict)
    assert record["command"].startswith(f"python benchmarks/{result.stem}.py")
