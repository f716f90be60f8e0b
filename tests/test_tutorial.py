"""The tutorial (docs/getting-started.md) runs as written, in a fresh copy of the repo.

Every ```` ```console ```` block of the page is executed: each ``$ command`` line runs in bash
at the copy's root, in order, and what follows it up to the next ``$`` line is the output the
page shows. The output is compared in substance, not byte for byte: the same lines in the
same order (so the same metric names, columns and row counts), where a word holding a digit
(a metric value, a time, a hash, a run id), an absolute path or AM/PM matches any word, and a
line ``...`` stands for any number of lines. ``[exit N]`` after an output is the exit code the
page promises (else 0). Blocks of other kinds (```` ```bash ````) are shown, not run.

``python tests/test_tutorial.py`` runs the page the same way and prints each command's real
output: that is where the page's outputs come from.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO, copy_repo

PAGE = REPO / "docs" / "getting-started.md"
COLUMNS = 120  # the terminal width the page's tables were captured at


@dataclass
class Step:
    command: str
    expected: list[str]
    exit_code: int = 0


def steps(page: Path = PAGE) -> list[Step]:
    """The page's commands with the output and exit code it shows for each."""
    found: list[Step] = []
    for block in re.findall(r"^```console\n(.*?)^```", page.read_text(), re.M | re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append(Step(line[2:], []))
            elif (code := re.fullmatch(r"\[exit (\d+)\]", line.strip())) and found:
                found[-1].exit_code = int(code.group(1))
            elif found and line.strip():
                found[-1].expected.append(line)
    return found


def _word(word: str) -> str:
    """A word as compared: any word with a digit, an absolute path, AM/PM is a wildcard."""
    if re.search(r"\d", word) or word.startswith(("/", "file://")) or word in ("AM", "PM"):
        return "#"
    return word


def _shape(line: str) -> list[str]:
    return [_word(w) for w in line.split()]


def matches(expected: list[str], actual: list[str]) -> bool:
    """``actual`` (its non-blank lines) has the lines of ``expected`` in order, ``...`` lines
    standing for any run of lines."""
    want = [_shape(line) if line.strip() != "..." else None for line in expected]
    have = [_shape(line) for line in actual if line.strip()]

    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(have)
        if want[i] is None:
            return any(match(i + 1, k) for k in range(j, len(have) + 1))
        return j < len(have) and want[i] == have[j] and match(i + 1, j + 1)

    return match(0, 0)


def environment(root: Path) -> dict[str, str]:
    """A user's shell in the project: the venv first on PATH, the store in the copy's mlruns/."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SCRATCHLAB_SPOOL", "PYTEST_CURRENT_TEST")}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, "SCRATCHLAB_ROOT": str(root), "COLUMNS": str(COLUMNS),
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"}


def fresh_copy(dest: Path) -> Path:
    """A clone-like copy on branch ``main``, as a user's checkout is."""
    root = copy_repo(dest)
    subprocess.run(["git", "branch", "-M", "main"], cwd=root, check=True)
    return root


def run(step: Step, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", step.command], cwd=root, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)


def test_the_page_shows_commands_and_their_outputs() -> None:
    found = steps()
    assert len(found) >= 8 and all(step.expected for step in found)
    assert {"dvc repro", "dvc exp show --only-changed --no-pager", "dvc plots show"} <= {
        step.command for step in found}


def test_outputs_are_compared_in_substance() -> None:
    shown = ["Path                  test_accuracy    test_loss", "reports/metrics.json  0.95  0.14"]
    assert matches(shown, ["Path  test_accuracy  test_loss", "reports/metrics.json 0.9 0.2", ""])
    assert not matches(shown, ["Path  test_accuracy  test_loss"])  # a row missing
    assert not matches(shown, ["Path  test_acc  test_loss", "reports/metrics.json 0.9 0.2"])
    assert matches(["a", "...", "z 1"], ["a", "b", "c", "z 2"]) and matches(["a", "..."], ["a"])


@pytest.mark.slow
def test_the_tutorial_runs_as_the_page_shows(tmp_path: Path) -> None:
    root = fresh_copy(tmp_path / "scratchlab")
    env = environment(root)
    for step in steps():
        done = run(step, root, env)
        actual = done.stdout.splitlines()
        assert done.returncode == step.exit_code, (
            f"$ {step.command}\nexited {done.returncode}, the page says {step.exit_code}:\n"
            f"{done.stdout[-3000:]}")
        assert matches(step.expected, actual), (
            f"$ {step.command}\nthe page shows:\n" + "\n".join(step.expected)
            + "\nit printed:\n" + done.stdout[-3000:])


if __name__ == "__main__":  # print the real outputs, for the page, and whether each matches
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = fresh_copy(Path(tmp) / "scratchlab")
        env = environment(root)
        for step in steps():
            done = run(step, root, env)
            same = matches(step.expected, done.stdout.splitlines())
            print(f"$ {step.command}\n{done.stdout}[exit {done.returncode}]"
                  f"{'' if same and done.returncode == step.exit_code else '  <- DIFFERS'}\n",
                  flush=True)
