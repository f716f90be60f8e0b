"""Fashion-MNIST (real 60k/10k): scratchlab against PyTorch and scikit-learn, same network.

784-100-10 ReLU, softmax + cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), no L2,
float32 pixels scaled to [0, 1], the same batch size and number of epochs for all three:
scratchlab's ``fit`` (He init), PyTorch CPU eager with 2 threads (Linear-ReLU-Linear, He init,
zero biases, CrossEntropyLoss, a shuffled ``randperm`` per epoch) and scikit-learn's
``MLPClassifier`` (its own Glorot init; fed float32, so it trains in float32). Each contender
runs in its own worker process (own data copy, own thread pools) and they take turns, one
training run at a time, each run ``--epochs`` epochs; epoch time = a run's training time /
epochs, median over ``--repeats`` runs. ``scratchlab_1blas`` is the same run with BLAS pinned
to one thread (``threadpool_limits(1, user_api="blas")``, deterministic mode).

Ideal = the epoch's GEMM FLOPs at the peak float32 GEMM rate measured in this run (a 3000^3
matmul in its own worker, with the default BLAS threads, taking turns with the contenders,
best of 3 per turn, median over turns). Counted per sample: forward 2 (784*100 + 100*10),
weight gradients 2 (784*100 + 100*10), the hidden layer's input gradient 2 (100*10); the
input layer's gradient is computed by none of the three. Elementwise work is not counted.

    .venv/bin/python benchmarks/bench_fashion.py [--repeats 5] [--epochs 10] [--batches 100,32]

The command unsets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` for its own worker processes
(they pin OpenBLAS's kernel on some machines and slow a current NumPy) and prints the kernel
threadpoolctl reports. The last line printed is one JSON object with every figure and a boolean
per target; ``benchmarks/record.py bench_fashion`` keeps it for the docs.
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from workers import Worker

D_IN, D_HIDDEN, D_OUT, LR = 784, 100, 10, 1e-3
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FLOPS_PER_SAMPLE = 4 * (D_IN * D_HIDDEN + D_HIDDEN * D_OUT) + 2 * D_HIDDEN * D_OUT
TARGETS = {"torch_100": 0.45, "torch_32": 0.40, "sklearn": 0.45, "ideal": 1.6, "rss": 2.0}
MIN_ACCURACY = 0.87
CONTENDERS = ("scratchlab", "scratchlab_1blas", "torch", "sklearn")
PAUSE_S = 0.5


PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def unpin_blas() -> dict[str, str]:
    """Unset the variables that pin OpenBLAS's kernel, for this process's workers (spawned
    after this); returns what they were."""
    return {name: os.environ.pop(name) for name in PINS if name in os.environ}


def _kernel_setup():
    from threadpoolctl import threadpool_info

    def run(data):
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if not blas:
            return "no BLAS found", 0.0
        pool = blas[0]
        return (f"{pool.get('internal_api')} {pool.get('version')} {pool.get('architecture')}, "
                f"{pool.get('num_threads')} threads"), 0.0

    return run, {}


def blas_kernel() -> str:
    """The BLAS kernel a worker spawned now (in this command's environment) computes with."""
    worker = Worker("blas", _kernel_setup, ())
    try:
        return worker.run()[0]
    finally:
        worker.close()


def default_data_dir() -> Path:
    shared = os.environ.get("SCRATCHLAB_SHARED_DATA")
    if shared:
        return Path(shared) / "fashion-mnist"
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"


def load(data_dir: Path, n_train: int | None, n_test: int | None) -> dict:
    """float32 pixels in [0, 1] (scaled in place: no float64 or second float32 copy)."""
    from scratchlab.data.idx import read_idx

    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images, labels = (read_idx(data_dir / name) for name in FILES[part])
        X = images[:n].reshape(-1, D_IN).astype(np.float32)
        del images
        X *= np.float32(1 / 255)
        out[part] = (X, labels[:n].astype(np.int64))
    return out


def run_scratchlab(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    from scratchlab.nn.loop import fit
    from scratchlab.nn.network import NetworkSpec, build_network
    from scratchlab.nn.optimizers import make_optimizer

    (X, y), (X_test, y_test) = data["train"], data["test"]
    if "onehot" not in data:
        data["onehot"] = np.eye(D_OUT, dtype=np.float32)[y]
    Y = data["onehot"]
    spec = NetworkSpec(D_IN, D_OUT, (D_HIDDEN,), "relu", "softmax", "cross_entropy", init="he")
    net = build_network(spec, np.random.default_rng(seed))
    opt = make_optimizer("adam", LR, beta1=0.9, beta2=0.999, eps=1e-8)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    fit(net, opt, X, Y, epochs=epochs, batch_size=batch, rng=rng, progress=False)
    seconds = time.perf_counter() - start
    return seconds, float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))


def run_scratchlab_1blas(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return run_scratchlab(data, batch, epochs, seed)


def run_torch(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    import torch

    (X, y), (X_test, y_test) = data["train"], data["test"]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(D_IN, D_HIDDEN), torch.nn.ReLU(), torch.nn.Linear(D_HIDDEN, D_OUT)
    )
    for layer in (model[0], model[2]):
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(Xt)
    start = time.perf_counter()
    for _ in range(epochs):
        perm, running = torch.randperm(n), 0.0
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        pred = model(torch.from_numpy(X_test)).argmax(dim=1).numpy()
    return seconds, float(np.mean(pred == y_test))


def run_sklearn(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    (X, y), (X_test, y_test) = data["train"], data["test"]
    clf = MLPClassifier(
        hidden_layer_sizes=(D_HIDDEN,), activation="relu", solver="adam", batch_size=batch,
        learning_rate_init=LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8, alpha=0.0,
        max_iter=epochs, n_iter_no_change=epochs + 1, shuffle=True, random_state=seed,
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    seconds = time.perf_counter() - start
    assert clf.n_iter_ == epochs and clf.coefs_[0].dtype == np.float32
    return seconds, float(np.mean(clf.predict(X_test) == y_test))


def run_gemm(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    """Best of 3 float32 ``size^3`` matmuls, in GFLOP/s (the other slot unused)."""
    size = 3000
    a = np.random.default_rng(seed).random((size, size), dtype=np.float32)
    times = []
    for _ in range(4):  # the first one warms up
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times[1:]) / 1e9, 0.0


RUNNERS = {
    "scratchlab": run_scratchlab,
    "scratchlab_1blas": run_scratchlab_1blas,
    "torch": run_torch,
    "sklearn": run_sklearn,
    "gemm": run_gemm,
}


def prepare(name: str, data_dir: str, n_train, n_test, warm_batch: int):
    """In the worker: load the data, warm up (imports, thread pools, caches) on a slice."""
    if name == "torch":
        import torch

        torch.set_num_threads(2)
    data = {} if name == "gemm" else load(Path(data_dir), n_train, n_test)
    if name != "gemm":
        small = {key: (X[:2000], y[:2000]) for key, (X, y) in data.items()}
        RUNNERS[name](small, warm_batch, 1, 0)
    return RUNNERS[name], data


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="dir with the 4 IDX .gz files")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batches", default="100,32", help="comma-separated batch sizes")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats, 1 epoch, "
                        "10000/2000 images")  # fmt: skip
    args = parser.parse_args(argv)
    args.data = args.data or default_data_dir()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.n_train = args.n_test = None
    if args.quick:
        args.repeats, args.epochs, args.n_train, args.n_test = 2, 1, 10000, 2000
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    missing = [f for pair in FILES.values() for f in pair if not (args.data / f).is_file()]
    if missing:
        sys.exit(f"Fashion-MNIST not found: {args.data} lacks {', '.join(missing)} "
                 "(pass --data DIR or set SCRATCHLAB_SHARED_DATA)")  # fmt: skip
    unpinned = unpin_blas()
    kernel = blas_kernel()
    names = list(CONTENDERS)
    if importlib.util.find_spec("torch") is None:
        print("torch not importable: skipped (pip install torch==2.13.0)", file=sys.stderr)
        names.remove("torch")
    setup = (str(args.data), args.n_train, args.n_test, args.batches[0])
    workers = {name: Worker(name, prepare, (name, *setup)) for name in [*names, "gemm"]}
    runs: dict = {b: {name: [] for name in workers} for b in args.batches}
    try:
        for batch in args.batches:
            for r in range(args.repeats):
                for name, worker in workers.items():
                    time.sleep(PAUSE_S)  # let the previous contender's threads go idle
                    seed = r if name == "gemm" else 0
                    runs[batch][name].append(worker.run(batch, args.epochs, seed))
    finally:
        for worker in workers.values():
            worker.close()
    report(args, names, runs, kernel, unpinned)


def report(args, names, runs, kernel="", unpinned=None) -> None:
    n_train = args.n_train or 60000
    n_test = args.n_test or 10000
    epoch_gflop = n_train * FLOPS_PER_SAMPLE / 1e9
    gemm = [run[0] for b in args.batches for run in runs[b]["gemm"]]
    others = [run[3] for b in args.batches for runs_ in runs[b].values() for run in runs_]
    peak = statistics.median(gemm)
    ideal = epoch_gflop / peak
    data_mb = (n_train * (D_IN + D_OUT) + n_test * D_IN) * 4 / 2**20
    rss_mb = max(run[2] for b in args.batches for run in runs[b]["scratchlab"])
    out = {"epochs": args.epochs, "repeats": args.repeats, "n_train": n_train, "n_test": n_test,
           "quick": args.quick, "peak_gemm_gflops": round(peak, 1), "epoch_gflop":
           round(epoch_gflop, 3), "ideal_epoch_s": round(ideal, 4), "cpus": os.cpu_count(),
           "others_cores_median": round(statistics.median(others), 2),
           "others_cores_max": round(max(others), 2), "peak_rss_mb": round(rss_mb, 1),
           "data_mb": round(data_mb, 1), "rss_vs_data": round(rss_mb / data_mb, 3),
           "target_rss": rss_mb <= TARGETS["rss"] * data_mb, "blas": kernel,
           "unset_env": unpinned or {}}  # fmt: skip
    print(f"Fashion-MNIST {n_train} train / {n_test} test, {D_IN}-{D_HIDDEN}-{D_OUT} ReLU, Adam "
          f"lr {LR:g}, float32, {args.epochs} epochs; median of {args.repeats} runs")  # fmt: skip
    print(f"{'batch':>5}  {'contender':<17}{'epoch s':>8}{'min s':>8}{'test acc':>9}")
    for b in args.batches:
        for name in names:
            epoch = [run[0] / args.epochs for run in runs[b][name]]
            acc = [run[1] for run in runs[b][name]]
            med, accuracy = statistics.median(epoch), statistics.median(acc)
            print(f"{b:>5}  {name:<17}{med:>8.3f}{min(epoch):>8.3f}{accuracy:>9.4f}")
            out[f"{name}_epoch_s_b{b}"] = round(med, 4)
            out[f"{name}_test_accuracy_b{b}"] = round(accuracy, 4)
            out[f"{name}_epoch_s_runs_b{b}"] = [round(e, 3) for e in epoch]
            out[f"{name}_others_cores_runs_b{b}"] = [round(run[3], 2) for run in runs[b][name]]
            if name.startswith("scratchlab"):
                out[f"{name}_reproducible_b{b}"] = len(set(acc)) == 1
    print(f"{'batch':>5}  {'vs torch':>9}{'vs sklearn':>11}{'vs ideal':>9}{'1-thread BLAS':>14}")
    for b in args.batches:
        ours = out[f"scratchlab_epoch_s_b{b}"]
        torch_s = out.get(f"torch_epoch_s_b{b}")
        ratios = {
            "ratio_vs_torch": ours / torch_s if torch_s else None,
            "ratio_vs_sklearn": ours / out[f"sklearn_epoch_s_b{b}"],
            "ratio_vs_ideal": ours / ideal,
            "deterministic_cost": out[f"scratchlab_1blas_epoch_s_b{b}"] / ours,
        }
        cells = [f"{v:.2f}x" if v is not None else "-" for v in ratios.values()]
        print(f"{b:>5}  {cells[0]:>9}{cells[1]:>11}{cells[2]:>9}{cells[3]:>14}")
        for key, value in ratios.items():
            out[f"{key}_b{b}"] = None if value is None else round(value, 3)
        limit = TARGETS["torch_100"] if b >= 100 else TARGETS["torch_32"]
        out[f"target_ratio_vs_torch_b{b}"] = bool(torch_s) and ratios["ratio_vs_torch"] <= limit
        out[f"target_ratio_vs_sklearn_b{b}"] = ratios["ratio_vs_sklearn"] <= TARGETS["sklearn"]
        out[f"target_ratio_vs_ideal_b{b}"] = ratios["ratio_vs_ideal"] <= TARGETS["ideal"]
        out[f"target_accuracy_b{b}"] = out[f"scratchlab_test_accuracy_b{b}"] >= MIN_ACCURACY
    print(f"peak GEMM {peak:.1f} GFLOP/s (median of {len(gemm)}, each best of 3 3000^3 matmuls); "
          f"epoch {epoch_gflop:.2f} GFLOP -> ideal {ideal:.4f} s")  # fmt: skip
    print(f"peak RSS of a scratchlab training run {rss_mb:.0f} MB (ru_maxrss of its worker); "
          f"float32 data {data_mb:.0f} MB, 2x = {2 * data_mb:.0f} MB")  # fmt: skip
    print(f"machine load from other processes during the runs: {out['others_cores_median']:.2f}"
          f" cores median, {out['others_cores_max']:.2f} max (of {os.cpu_count()})")  # fmt: skip
    met = sorted(k for k, v in out.items() if k.startswith("target_") and v is True)
    missed = sorted(k for k, v in out.items() if k.startswith("target_") and v is not True)
    print(f"BLAS: {kernel}; unset for the workers: {unpinned or 'nothing'}")
    print(f"targets met: {', '.join(met) or '-'}; not met: {', '.join(missed) or '-'}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
