"""Bit-identical weights across BLAS thread counts with train.deterministic, and the numeric
environment every run records."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from conftest import REPO, project_env
from scratchlab.api import config
from scratchlab.data.idx import write_idx
from scratchlab.data.splits import Split, Splits
from scratchlab.numerics import numeric_environment
from scratchlab.trainer import train_network


def _mnist_shaped(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4000 784-pixel images: wide enough that OpenBLAS splits the products over threads."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (4000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4000)


def _splits() -> Splits:
    images, labels = _mnist_shaped()
    X = (images.reshape(len(images), -1) / 255.0).astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[labels]
    parts = [Split(X[a:b], labels[a:b], Y[a:b]) for a, b in ((0, 3000), (3000, 3500), (3500, 4000))]
    return Splits(*parts, task="classification", class_names=[str(d) for d in range(10)])


def _weights(deterministic: bool, threads: int) -> np.ndarray:
    cfg = config("train.epochs=2", "train.batch_size=100", "optimizer=sgd",
                 "train.progress=false", f"train.deterministic={str(deterministic).lower()}")
    with threadpool_limits(limits=threads, user_api="blas"):
        return train_network(cfg, _splits()).net.flat_params.copy()


def test_deterministic_weights_do_not_depend_on_the_thread_count() -> None:
    assert np.array_equal(_weights(True, 1), _weights(True, 2))


def test_without_it_two_threads_round_differently() -> None:
    """The case the switch exists for (and proof that the test above can fail)."""
    one, two = _weights(False, 1), _weights(False, 2)
    assert not np.array_equal(one, two) and np.abs(one - two).max() < 1e-5


def test_the_numeric_environment_is_named() -> None:
    tags = numeric_environment(deterministic=True)
    assert tags["numeric.numpy"] == np.__version__ and tags["numeric.blas_threads"] == "1"
    assert {"numeric.blas", "numeric.blas_version", "numeric.blas_kernel", "numeric.cpu",
            "numeric.python", "numeric.platform", "numeric.deterministic"} <= set(tags)


@pytest.mark.slow
def test_real_processes_with_one_and_two_openblas_threads_agree_bit_for_bit(
    tmp_path: Path
) -> None:
    images, labels = _mnist_shaped()
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels.astype(np.uint8))
    digests = {}
    for threads in ("1", "2"):
        env = {**project_env(REPO, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"),
               "OPENBLAS_NUM_THREADS": threads}
        out = tmp_path / f"out{threads}"
        done = subprocess.run(
            [sys.executable, "-m", "scratchlab.train", "data=idx",
             f"data.images={tmp_path / 'images.gz'}", f"data.labels={tmp_path / 'labels.gz'}",
             "optimizer=sgd", "train.epochs=2", "train.batch_size=100", "train.progress=false",
             "tracking.log_model=false", f"hydra.run.dir={out}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        digests[threads] = [hashlib.sha256((out / name).read_bytes()).hexdigest()
                            for name in ("model.npz", "metrics.json")]
    assert digests["1"] == digests["2"]  # the weights, and the test metrics scored with them
