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

from helpers import REPO, SHARED_MNIST, project_env
from scratchlab.api import config
from scratchlab.core.numerics import numeric_environment
from scratchlab.data.idx import write_idx
from scratchlab.pipeline.training import train
from scratchlab.spec.splits import Split, Splits


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
        return train(cfg, _splits()).net.flat_params.copy()


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


def _idx_data(tmp_path: Path) -> tuple[Path, Path]:
    """The issue's case: the real MNIST t10k files when ../shared has them, else synthetic
    MNIST-shaped IDX files (which round differently across thread counts too)."""
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return (SHARED_MNIST / "t10k-images-idx3-ubyte.gz",
                SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    images, labels = _mnist_shaped()
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels.astype(np.uint8))
    return tmp_path / "images.gz", tmp_path / "labels.gz"


# Without the switch, in a lighter process than the Hydra app (no MLflow): the same trainer.
_OFF = """
import sys
import numpy as np
from scratchlab.api import config, load_data, train
cfg = config("experiment=mnist_two_layer", "data=idx", "data.images=" + sys.argv[1],
             "data.labels=" + sys.argv[2], "train.epochs=2", "train.progress=false",
             "train.deterministic=false")
np.save(sys.argv[3], train(cfg, load_data(cfg)).net.flat_params)
"""


@pytest.mark.slow
def test_real_processes_with_one_and_two_openblas_threads(tmp_path: Path) -> None:
    """``experiment=mnist_two_layer data=idx``, 2 epochs, under OPENBLAS_NUM_THREADS=1 and =2
    (four processes at once): with the switch on (the Hydra app), the same model.npz and
    metrics.json bytes; off, different weights (so the first check is a real one)."""
    images, labels = _idx_data(tmp_path)
    procs = {}
    for threads in ("1", "2"):
        env = {**project_env(REPO, f"sqlite:///{tmp_path / f'store{threads}' / 'mlflow.db'}"),
               "OPENBLAS_NUM_THREADS": threads}
        procs["on", threads] = subprocess.Popen(
            [sys.executable, "-m", "scratchlab.train", "experiment=mnist_two_layer", "data=idx",
             f"data.images={images}", f"data.labels={labels}", "train.epochs=2",
             "train.progress=false", "tracking.log_model=false",
             f"hydra.run.dir={tmp_path / f'out{threads}'}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        procs["off", threads] = subprocess.Popen(
            [sys.executable, "-c", _OFF, str(images), str(labels), str(tmp_path / f"off{threads}")],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
    for proc in procs.values():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    one, two = (tmp_path / "out1", tmp_path / "out2")
    assert _sha(one / "model.npz") == _sha(two / "model.npz")
    assert (one / "metrics.json").read_text() == (two / "metrics.json").read_text()
    off = np.abs(np.load(tmp_path / "off1.npy") - np.load(tmp_path / "off2.npy")).max()
    assert 0.0 < off < 1e-5


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
