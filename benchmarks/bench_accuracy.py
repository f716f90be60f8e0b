"""Test accuracy of the reference experiments, trained exactly as ``scratchlab.train`` does.

- digits (bundled) with ``keras_mlp``, for training seeds 0..N-1 (target >= 0.97; every seed's
  figure is printed, since one seed's can sit on either side of it);
- the real Fashion-MNIST 60k/10k (``../shared/data/fashion-mnist`` as the mirror) with
  ``fashion_mlp`` (scikit-learn's MLPClassifier net, floor 0.87) and ``fashion_best`` (>= 0.89);
- the official MNIST t10k files split 8000/2000 (``data=idx data.test_fraction=0.2``, seeded
  and stratified by ``data.split_seed``) with ``mnist_best`` (target >= 0.95) and
  ``mnist_two_layer``.

Same config, seed and random-number stream as the Hydra app (same weights), minus MLflow, so
the wall times are the engine's. The last line printed is one JSON object with the figures.

    .venv/bin/python benchmarks/bench_accuracy.py [--seeds 5] [--mnist-dir ../shared/data/mnist]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from scratchlab.config import compose, validate
from scratchlab.core.paths import project_root
from scratchlab.data.registry import data_config
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.pipeline.training import train
from scratchlab.spec.splits import Splits

KERAS_MLP_TARGET = 0.97  # the seed article's Keras MLP on digits


def train_and_score(overrides: list[str], splits: Splits | None = None) -> dict:
    """Train one configuration and return its test accuracy, epochs and wall time."""
    config = validate(compose([*overrides, "train.progress=false"]), data=data_config)
    if splits is None:
        splits, _ = prepare_data(config)
    start = time.perf_counter()
    trained = train(config, splits)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(trained.net.predict(splits.test.X).argmax(axis=1) == splits.test.y))
    return {"accuracy": accuracy, "epochs": trained.history.epochs_run, "seconds": seconds,
            "train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}


def _row(name: str, result: dict) -> None:
    print(f"{name:<34}{result['accuracy']:>9.4f}{result['epochs']:>8}{result['seconds']:>9.1f}"
          f"   {result['train']}/{result['val']}/{result['test']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="keras_mlp training seeds on digits")
    shared = project_root().parent / "shared" / "data"
    parser.add_argument("--mnist-dir", type=Path, default=shared / "mnist")
    parser.add_argument("--fashion-dir", type=Path, default=shared / "fashion-mnist",
                        help="a mirror of the four Fashion-MNIST files")
    args = parser.parse_args()

    print(f"{'experiment (data)':<34}{'test acc':>9}{'epochs':>8}{'train s':>9}"
          "   train/val/test", flush=True)
    figures: dict = {}
    digits = [
        train_and_score(["experiment=keras_mlp", f"train.seed={seed}"])
        for seed in range(args.seeds)
    ]
    for seed, result in enumerate(digits):
        _row(f"keras_mlp (digits) seed {seed}", result)
    accuracies = [r["accuracy"] for r in digits]
    figures["digits_keras_mlp_accuracies"] = [round(a, 4) for a in accuracies]
    figures["digits_keras_mlp_split"] = [digits[0][k] for k in ("train", "val", "test")]
    figures["digits_keras_mlp_epochs"] = digits[0]["epochs"]
    figures["digits_keras_mlp_seed0"] = round(accuracies[0], 4)
    figures["digits_keras_mlp_mean"] = round(statistics.mean(accuracies), 4)
    figures["digits_keras_mlp_min"] = round(min(accuracies), 4)
    figures["digits_keras_mlp_max"] = round(max(accuracies), 4)
    figures["digits_keras_mlp_seeds"] = len(accuracies)
    figures["digits_keras_mlp_target"] = KERAS_MLP_TARGET
    figures["digits_keras_mlp_seeds_met"] = sum(a >= KERAS_MLP_TARGET for a in accuracies)
    figures["digits_keras_mlp_mean_met"] = statistics.mean(accuracies) >= KERAS_MLP_TARGET
    figures["digits_keras_mlp_s"] = round(statistics.median(r["seconds"] for r in digits), 1)

    images = args.mnist_dir / "t10k-images-idx3-ubyte.gz"
    labels = args.mnist_dir / "t10k-labels-idx1-ubyte.gz"
    if images.is_file() and labels.is_file():
        t10k = ["data=idx", f"data.images={images.resolve()}",
                f"data.labels={labels.resolve()}", "data.test_fraction=0.2"]
        for name in ("mnist_best", "mnist_two_layer"):
            result = train_and_score([f"experiment={name}", *t10k])
            _row(f"{name} (t10k 8000/2000)", result)
            figures[f"t10k_{name}"] = round(result["accuracy"], 4)
            figures[f"t10k_{name}_epochs"] = result["epochs"]
            figures[f"t10k_{name}_s"] = round(result["seconds"], 1)
            figures["t10k_split"] = [result[k] for k in ("train", "val", "test")]
    else:
        print(f"MNIST t10k files not found in {args.mnist_dir}: skipped", file=sys.stderr)

    if (args.fashion_dir / "train-images-idx3-ubyte.gz").is_file():
        floors = {"fashion_mlp": 0.87, "fashion_best": 0.89}  # the issue's: paper ~0.87
        for name, floor in floors.items():
            result = train_and_score([f"experiment={name}",
                                      f"data.mirror={args.fashion_dir.resolve()}"])
            _row(f"{name} (Fashion-MNIST 60k/10k)", result)
            figures[name] = round(result["accuracy"], 4)
            figures[f"{name}_epochs"] = result["epochs"]
            figures[f"{name}_s"] = round(result["seconds"], 1)
            figures[f"{name}_floor_met"] = result["accuracy"] >= floor
    else:
        print(f"Fashion-MNIST files not found in {args.fashion_dir}: skipped", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
