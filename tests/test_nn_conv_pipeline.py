"""Conv nets through the rest of the project, in-process: a job's MLflow run and logged model on
digits' 8x8 images, a sweep over the blocks, the memory preflight, and bit-identical weights for
one seed whatever the BLAS thread count (``train.deterministic``)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from scratchlab.api import config, load_data
from scratchlab.core.errors import ConfigError
from scratchlab.pipeline.job import run_config
from scratchlab.pipeline.training import preflight, train
from scratchlab.spec.splits import Split, Splits
from scratchlab.sweeps.parent import child_tags, start_parent
from scratchlab.sweeps.report import report_parent

CONV = ("model=cnn", "model.blocks=[{type: conv, filters: 6, kernel: 3, padding: 1},"
        "{type: maxpool, size: 2}]", "model.hidden=[32]", "optimizer=adam",
        "optimizer.lr=0.005", "train.epochs=4", "train.progress=false")


def test_a_conv_job_records_a_run_and_a_model_that_scores(tracking_uri: str,
                                                          tmp_path: Path) -> None:
    cfg = config(*CONV)
    run_config(cfg, tmp_path / "job", run_name="conv")
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("scratchlab").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] > 0.9
    assert run.data.params["model.name"] == "cnn"
    splits = load_data(cfg)
    X = splits.test.X  # float32, as data/processed holds it
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    from scratchlab.nn.persistence import load_network

    net = load_network(tmp_path / "job" / "model.npz")
    assert net.spec.image_shape == (1, 8, 8) and net.spec.blocks
    np.testing.assert_array_equal(model.predict(X), net.predict(X))
    assert np.mean(net.predict(X).argmax(axis=1) == splits.test.y) == pytest.approx(
        run.data.metrics["test_accuracy"])


def test_a_sweep_over_conv_blocks(tracking_uri: str, tmp_path: Path) -> None:
    base = config(*CONV)
    info = start_parent(base.plain["tracking"], ["model.blocks.0.filters"],
                        "sweep model.blocks.0.filters", {})
    for job, filters in enumerate((2, 8)):
        run_config(config(*CONV, f"model.blocks.0.filters={filters}"), tmp_path / str(job),
                   run_name=f"filters={filters}", tags=child_tags(info, job),
                   parent_run_id=info.parent_run_id)
    comparison = report_parent(info.parent_run_id, tmp_path / "comparison")
    assert [r.name for r in comparison.runs] == ["filters=2", "filters=8"]
    assert not any(r.diverged for r in comparison.runs)


def test_preflight_refuses_blocks_the_images_cannot_take() -> None:
    """digits' images are 8x8: a 5x5 kernel leaves 4x4, a 5x5 pool cannot fit."""
    cfg = config(*CONV, "model.blocks=[{type: conv, filters: 2, kernel: 5},"
                 "{type: maxpool, size: 5}]")
    with pytest.raises(ConfigError, match=r"^model\.blocks\[1\]\.size=5: larger than its 4x4 "
                                          r"input \(after blocks\[0\]\)$"):
        preflight(cfg, load_data(cfg))


def _images() -> Splits:
    """MNIST-shaped random images: wide enough that OpenBLAS splits the products."""
    rng = np.random.default_rng(0)
    X = rng.random((1500, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 1500)
    Y = np.eye(10, dtype=np.float32)[labels]
    parts = [Split(X[a:b], labels[a:b], Y[a:b]) for a, b in ((0, 1000), (1000, 1250),
                                                             (1250, 1500))]
    return Splits(*parts, task="classification", class_names=[str(d) for d in range(10)],
                  image_shape=(28, 28))


def _weights(threads: int) -> np.ndarray:
    cfg = config("model=cnn", "optimizer=adam", "train.epochs=1", "train.batch_size=100",
                 "train.progress=false", "train.deterministic=true")
    with threadpool_limits(limits=threads, user_api="blas"):
        return train(cfg, _images()).net.flat_params.copy()


def test_deterministic_conv_weights_do_not_depend_on_the_thread_count() -> None:
    assert np.array_equal(_weights(1), _weights(2))
