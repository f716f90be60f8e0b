"""``scratchlab gradcheck`` as a user runs it: a real process on configured networks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, project_env

pytestmark = pytest.mark.slow


def _gradcheck(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = project_env(REPO, f"sqlite:///{tmp_path / 'unused.db'}")
    return subprocess.run(
        [sys.executable, "-m", "scratchlab.cli", "gradcheck", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def _table(stdout: str) -> dict[str, float]:
    """parameter -> relative error, from the printed table."""
    rows = [line.split() for line in stdout.splitlines()[1:] if line and not line[0].isupper()]
    return {row[0]: float(row[2]) for row in rows}


@pytest.mark.parametrize(
    ("overrides", "parameters"),
    [
        ([], {"dense1.W", "dense1.b", "dense2.W", "dense2.b"}),
        (["model=mlp"], {"dense1.W", "dense2.W", "dense3.W", "dense3.b"}),
        (["model=two_layer", "model.batchnorm=true"],
         {"dense1.W", "batchnorm1.gamma", "batchnorm1.beta", "dense2.W", "dense2.b"}),
        (["experiment=mnist_cnn"],
         {"conv1.W", "conv1.b", "dense1.W", "dense1.b", "dense2.W", "dense2.b"}),
    ],
    ids=["default", "mlp-dropout", "batchnorm", "mnist_cnn"],
)
def test_configured_network_passes(tmp_path: Path, overrides: list[str], parameters: set) -> None:
    done = _gradcheck(tmp_path, *overrides)
    assert done.returncode == 0, done.stdout + done.stderr
    errors = _table(done.stdout)
    assert parameters <= set(errors)
    assert all(0 <= error < 1e-6 for error in errors.values()), done.stdout
    assert done.stdout.splitlines()[-1].startswith("OK:")


def test_impossible_tolerance_fails_naming_the_worst_parameter(tmp_path: Path) -> None:
    done = _gradcheck(tmp_path, "--tolerance", "1e-30", "--samples", "4")
    assert done.returncode == 1, done.stdout + done.stderr
    errors = _table(done.stdout)
    worst = max(errors, key=errors.__getitem__)
    failures = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(failures) == 1 and "Traceback" not in done.stderr
    assert f"gradient check failed: {worst} relative error" in failures[0]


def test_random_batch_for_datasets_that_need_a_download(tmp_path: Path) -> None:
    """idx takes its shape from the flags; nothing is fetched (the paths do not exist)."""
    done = _gradcheck(tmp_path, "--input-dim", "12", "--output-dim", "3", "data=idx",
                      "data.images=/nonexistent/images.gz", "data.labels=/nonexistent/labels.gz")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 4 parameters of 12-100-3" in done.stdout


def test_conv_net_sampled_entries_are_said(tmp_path: Path) -> None:
    """mnist_cnn's first Dense layer has 432,000 weights: 1000 of them are checked (by
    default), and the table says so."""
    done = _gradcheck(tmp_path, "--samples", "4", "experiment=mnist_cnn")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dense1.W   4320x100      " in done.stdout
    assert "(1000 of 432000 entries)" in done.stdout
    assert "OK: 6 parameters of conv net 784-100-10" in done.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.blocks.0.stride=0",
         "model.blocks[0].stride=0 is out of range; expected an integer in [1, inf]"),
        ("model.blocks.0.kernel=30", "model.blocks[0].kernel=30: larger than its 28x28 input"),
        ("model.blocks.0.kernel=25 model.blocks.1.size=5",
         "model.blocks[1].size=5: larger than its 4x4 input (after blocks[0])"),
    ],
    ids=["stride-0", "kernel-too-large", "pool-too-large"],
)
def test_impossible_conv_net_is_a_config_error(tmp_path: Path, override: str,
                                               message: str) -> None:
    """Exit 2 and one line naming the key, before anything is computed."""
    done = _gradcheck(tmp_path, "experiment=mnist_cnn", *override.split())
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(message), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
