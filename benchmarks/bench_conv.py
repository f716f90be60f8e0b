"""Fashion-MNIST (real 60k/10k): the book's SimpleConvNet, scratchlab against PyTorch.

conv 30@5x5 (stride 1, no padding) -> ReLU -> max-pool 2x2 -> Dense 100 ReLU -> 10, softmax +
cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), float32 pixels in [0, 1] reshaped to
(N, 1, 28, 28), batch 100, the same initial weights (He normal, drawn by scratchlab and copied
into PyTorch's Conv2d/Linear; biases 0), a shuffled order per epoch. scratchlab's ``fit`` with
the default BLAS threads against PyTorch 2.13 CPU eager with ``torch.set_num_threads(2)``, each
in its own worker process (own data copy, own thread pools), taking turns, one training run at a
time; epoch time = a run's training time / epochs, median over ``--repeats`` runs.

Ideal = the epoch's matrix-product FLOPs at the peak float32 GEMM rate measured in this run (a
3000^3 matmul in its own worker, best of 3 per turn, median over turns). Counted per image:
the convolution 2 * 30 * 25 * 576 forward and as much for its weight gradient (the input's
gradient is computed by neither contender), the 4320-100 layer 2 * 432,000 forward, for its
weight gradient and for its input gradient, the 100-10 layer likewise. im2col, pooling, ReLU
and the optimizer are not counted.

The command unsets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` for its own worker processes
(they pin OpenBLAS's kernel on some machines and slow a current NumPy) and prints the kernel
threadpoolctl reports. The last line printed is one JSON object with every figure;
``benchmarks/record.py bench_conv`` keeps it for the docs. PyTorch comes from the interpreter
running this (a separate virtualenv: it is no dependency of scratchlab or its tests).

    python benchmarks/record.py bench_conv [--repeats 3] [--epochs 2] [--quick]
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_fashion import (
    FILES,
    blas_kernel,
    default_data_dir,
    load,
    run_gemm,
    unpin_blas,
)
from workers import Worker

FILTERS, KERNEL, POOL, HIDDEN, CLASSES, LR, BATCH = 30, 5, 2, 100, 10, 1e-3, 100
CONV_OUT = 28 - KERNEL + 1  # 24
FLAT = FILTERS * (CONV_OUT // POOL) ** 2  # 4320
CONV_FLOPS = 2 * FILTERS * KERNEL * KERNEL * CONV_OUT**2
FLOPS_PER_SAMPLE = 2 * CONV_FLOPS + 3 * 2 * (FLAT * HIDDEN + HIDDEN * CLASSES)
TARGETS = {"torch": 1.0, "torch_done": 1.5, "rss": 3.0}
PAUSE_S = 0.5


def spec():
    from scratchlab.spec.network import NetworkSpec

    return NetworkSpec(784, CLASSES, (HIDDEN,), "relu", init="he", image_shape=(1, 28, 28),
                       blocks=[{"type": "conv", "filters": FILTERS, "kernel": KERNEL},
                               {"type": "maxpool", "size": POOL}])


def initial_weights(seed: int) -> dict:
    """scratchlab's initial weights for ``seed``: both contenders start from them."""
    from scratchlab.nn.network import build_network

    return build_network(spec(), np.random.default_rng(seed)).state_dict()


def run_scratchlab(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    from scratchlab.nn.loop import fit
    from scratchlab.nn.network import build_network
    from scratchlab.nn.optimizers import make_optimizer

    (X, y), (X_test, y_test) = data["train"], data["test"]
    if "onehot" not in data:
        data["onehot"] = np.eye(CLASSES, dtype=np.float32)[y]
    net = build_network(spec(), np.random.default_rng(seed))
    opt = make_optimizer("adam", LR, beta1=0.9, beta2=0.999, eps=1e-8)
    start = time.perf_counter()
    fit(net, opt, X, data["onehot"], epochs=epochs, batch_size=batch,
        rng=np.random.default_rng(seed), progress=False)
    seconds = time.perf_counter() - start
    return seconds, float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))


def run_torch(data: dict, batch: int, epochs: int, seed: int) -> tuple[float, float]:
    import torch

    (X, y), (X_test, y_test) = data["train"], data["test"]
    Xt, yt = torch.from_numpy(X).reshape(-1, 1, 28, 28), torch.from_numpy(y)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, FILTERS, KERNEL), torch.nn.ReLU(), torch.nn.MaxPool2d(POOL),
        torch.nn.Flatten(), torch.nn.Linear(FLAT, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    )
    w = initial_weights(seed)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w["conv1.W"]))
        model[0].bias.copy_(torch.from_numpy(w["conv1.b"]))
        for layer, name in ((model[4], "dense1"), (model[6], "dense2")):
            layer.weight.copy_(torch.from_numpy(w[f"{name}.W"].T))
            layer.bias.copy_(torch.from_numpy(w[f"{name}.b"]))
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    torch.manual_seed(seed)
    n = len(Xt)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        pred = model(torch.from_numpy(X_test).reshape(-1, 1, 28, 28)).argmax(dim=1).numpy()
    return seconds, float(np.mean(pred == y_test))


RUNNERS = {"scratchlab": run_scratchlab, "torch": run_torch, "gemm": run_gemm}


def prepare(name: str, data_dir: str, n_train, n_test):
    """In the worker: load the data, warm up (imports, thread pools, caches) on a slice."""
    if name == "torch":
        import torch

        torch.set_num_threads(2)
    data = {} if name == "gemm" else load(Path(data_dir), n_train, n_test)
    if name != "gemm":
        small = {key: (X[:1000], y[:1000]) for key, (X, y) in data.items()}
        RUNNERS[name](small, BATCH, 1, 0)
    return RUNNERS[name], data


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="dir with the 4 IDX .gz files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 repeats, 1 epoch, 6000/1000 images")
    args = parser.parse_args(argv)
    args.data = args.data or default_data_dir()
    args.n_train = args.n_test = None
    if args.quick:
        args.repeats, args.epochs, args.n_train, args.n_test = 2, 1, 6000, 1000
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    missing = [f for pair in FILES.values() for f in pair if not (args.data / f).is_file()]
    if missing:
        sys.exit(f"Fashion-MNIST not found: {args.data} lacks {', '.join(missing)} "
                 "(pass --data DIR or set SCRATCHLAB_SHARED_DATA)")
    unpinned = unpin_blas()
    kernel = blas_kernel()
    names = ["scratchlab", "torch"]
    if importlib.util.find_spec("torch") is None:
        print("torch not importable: skipped (pip install torch==2.13.0)", file=sys.stderr)
        names.remove("torch")
    setup = (str(args.data), args.n_train, args.n_test)
    workers = {name: Worker(name, prepare, (name, *setup)) for name in [*names, "gemm"]}
    runs: dict = {name: [] for name in workers}
    try:
        for r in range(args.repeats):
            for name, worker in workers.items():
                time.sleep(PAUSE_S)  # let the previous contender's threads go idle
                runs[name].append(worker.run(BATCH, args.epochs, r if name == "gemm" else 0))
    finally:
        for worker in workers.values():
            worker.close()
    report(args, names, runs, kernel, unpinned)


def report(args, names, runs, kernel, unpinned) -> None:
    """Each run is (seconds or GFLOP/s, accuracy, peak RSS MB, other processes' cores)."""
    n_train, n_test = args.n_train or 60000, args.n_test or 10000
    epoch_gflop = n_train * FLOPS_PER_SAMPLE / 1e9
    peak = statistics.median(run[0] for run in runs["gemm"])
    ideal = epoch_gflop / peak
    data_mb = (n_train * (784 + CLASSES) + n_test * 784) * 4 / 2**20
    rss_mb = max(run[2] for run in runs["scratchlab"])
    others = [run[3] for runs_ in runs.values() for run in runs_]
    out = {"benchmark": "bench_conv", "epochs": args.epochs, "repeats": args.repeats,
           "batch": BATCH, "n_train": n_train, "n_test": n_test, "quick": args.quick,
           "peak_gemm_gflops": round(peak, 1), "epoch_gflop": round(epoch_gflop, 2),
           "ideal_epoch_s": round(ideal, 3), "peak_rss_mb": round(rss_mb, 1),
           "data_mb": round(data_mb, 1), "rss_vs_data": round(rss_mb / data_mb, 3),
           "others_cores_median": round(statistics.median(others), 2),
           "others_cores_max": round(max(others), 2), "blas": kernel,
           "unset_env": unpinned}
    print(f"Fashion-MNIST {n_train} train / {n_test} test, SimpleConvNet (conv {FILTERS}@"
          f"{KERNEL}x{KERNEL}, max-pool {POOL}, {HIDDEN}, {CLASSES}), Adam, float32, batch "
          f"{BATCH}, {args.epochs} epochs; median of {args.repeats} runs")
    print(f"{'contender':<12}{'epoch s':>9}{'min s':>9}{'test acc':>10}")
    for name in names:
        epoch = [run[0] / args.epochs for run in runs[name]]
        med = statistics.median(epoch)
        accuracy = statistics.median(run[1] for run in runs[name])
        print(f"{name:<12}{med:>9.2f}{min(epoch):>9.2f}{accuracy:>10.4f}")
        out[f"{name}_epoch_s"] = round(med, 3)
        out[f"{name}_epoch_s_runs"] = [round(e, 3) for e in epoch]
        out[f"{name}_test_accuracy"] = round(accuracy, 4)
    ours = out["scratchlab_epoch_s"]
    out["ratio_vs_torch"] = round(ours / out["torch_epoch_s"], 3) if "torch" in names else None
    out["ratio_vs_ideal"] = round(ours / ideal, 3)
    ratio = out["ratio_vs_torch"]
    out["target_ratio_vs_torch"] = ratio is not None and ratio <= TARGETS["torch"]
    out["done_ratio_vs_torch"] = ratio is not None and ratio <= TARGETS["torch_done"]
    out["target_rss"] = rss_mb <= TARGETS["rss"] * data_mb
    print(f"ratio vs torch {ratio}x, vs ideal {out['ratio_vs_ideal']}x: peak GEMM {peak:.1f} "
          f"GFLOP/s (median of {len(runs['gemm'])}), epoch {epoch_gflop:.1f} GFLOP -> ideal "
          f"{ideal:.2f} s")
    print(f"peak RSS of a scratchlab training run {rss_mb:.0f} MB; float32 data {data_mb:.0f} "
          f"MB, 3x = {3 * data_mb:.0f} MB")
    print(f"BLAS: {kernel}; unset for the workers: {unpinned or 'nothing'}")
    print(f"machine load from other processes during the runs: {out['others_cores_median']:.2f}"
          f" cores median, {out['others_cores_max']:.2f} max (of {os.cpu_count()})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
