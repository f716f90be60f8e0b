"""Test accuracy of MLPs on the real Fashion-MNIST (60k train / official 10k test).

The split is the pipeline's: 10% of the 60k training images held out for validation,
stratified and seeded like ``train.val_fraction=0.1`` with ``data.split_seed=0``; pixels / 255
in float64, then float32, like ``preprocess``; one ``numpy.random.Generator`` seeded by
``--seed`` draws the initial weights, then dropout masks and batches, like ``scratchlab.train``.
Early stopping (when configured) watches ``val_accuracy`` and restores the best epoch.

    .venv/bin/python benchmarks/bench_fashion_accuracy.py [--configs two_layer,best] [--seed 0]

The last line printed is one JSON object with the figures.
"""

import argparse
import json
import time

import numpy as np
from bench_fashion import FILES, default_data_dir

from scratchlab.data.idx import read_idx
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import make_optimizer
from scratchlab.nn.training import EarlyStopping, fit
from scratchlab.preprocess import stratified_holdout

# name: (model.* keys, optimizer.lr, batch size, max epochs, early-stopping patience or None)
CONFIGS = {
    "two_layer": ({"hidden": (100,), "activation": "relu", "init": "he"}, 1e-3, 100, 10, None),
    "wide_dropout": (
        {"hidden": (512, 256), "activation": "relu", "init": "he", "dropout": 0.3},
        1e-3, 128, 60, 8,
    ),
    "bn_dropout": (
        {"hidden": (512, 256), "activation": "relu", "init": "he", "dropout": 0.3,
         "batchnorm": True},
        1e-3, 128, 60, 8,
    ),
    "deep_dropout": (
        {"hidden": (512, 512, 256), "activation": "relu", "init": "he", "dropout": 0.3},
        1e-3, 128, 60, 8,
    ),
    "wide_l2": (
        {"hidden": (512, 256), "activation": "relu", "init": "he", "weight_decay": 1e-4},
        1e-3, 128, 60, 8,
    ),
}  # fmt: skip


def load(data_dir, val_fraction: float = 0.1, split_seed: int = 0) -> dict:
    out = {}
    for part, (images, labels) in FILES.items():
        X = read_idx(data_dir / images)
        X = (X.reshape(len(X), -1) / 255.0).astype(np.float32)
        out[part] = (X, read_idx(data_dir / labels).astype(np.int64))
    X, y = out.pop("train")
    keep, hold = stratified_holdout(y, val_fraction, np.random.default_rng(split_seed), True)
    out["train"], out["val"] = (X[keep], y[keep]), (X[hold], y[hold])
    return out


def train(data: dict, name: str, seed: int) -> dict:
    model, lr, batch, epochs, patience = CONFIGS[name]
    onehot = np.eye(10, dtype=np.float32)
    (X, y), (X_val, y_val), (X_test, y_test) = data["train"], data["val"], data["test"]
    rng = np.random.default_rng(seed)
    net = build_network(NetworkSpec(784, 10, **model), rng)
    stopper = EarlyStopping("val_accuracy", patience=patience) if patience else None
    start = time.perf_counter()
    history = fit(
        net, make_optimizer("adam", lr), X, onehot[y], epochs=epochs, batch_size=batch,
        rng=rng, validation_data=(X_val, onehot[y_val]), early_stopping=stopper,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))
    best = history.best_epoch if stopper else history.epochs_run - 1
    return {"test_accuracy": round(accuracy, 4), "epochs_run": history.epochs_run,
            "best_epoch": best + 1,
            "val_accuracy": round(history.history["val_accuracy"][best], 4),
            "seconds": round(seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=lambda p: __import__("pathlib").Path(p), default=None)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load(args.data or default_data_dir())
    sizes = "/".join(str(len(data[p][1])) for p in ("train", "val", "test"))
    print(f"Fashion-MNIST {sizes} (train/val/test), seed {args.seed}")
    print(f"{'config':<14}{'test acc':>9}{'val acc':>9}{'best ep':>8}{'epochs':>7}{'train s':>9}")
    figures = {}
    for name in args.configs.split(","):
        r = figures[name] = train(data, name, args.seed)
        row = f"{r['best_epoch']:>8}{r['epochs_run']:>7}{r['seconds']:>9.1f}"
        print(f"{name:<14}{r['test_accuracy']:>9.4f}{r['val_accuracy']:>9.4f}{row}", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
