"""Time one training epoch of a 784-100-10 sigmoid/softmax-CE net on MNIST-shaped data.

Compares scratchlab (SGD and Adam) with PyTorch CPU eager (if importable) and scikit-learn's
MLPClassifier on the same data, architecture, batch size (100) and dtype (float32), each epoch
including its shuffling. Each contender lives in its own worker process (its own copy of the
data, its own BLAS/OpenMP thread pools: in one process, torch's OpenMP threads still spinning
after its epoch would slow whoever runs next). Runs are interleaved (ours, ours-Adam, torch,
sklearn, repeat), one at a time with a short pause between, so load from other processes hits
every contender alike; medians are reported. The "ideal" time
is the epoch's FLOPs (forward + backward ~ 6 n (784*100 + 100*10)) at the peak float32 GEMM
throughput measured here with one big matmul.

    .venv/bin/python benchmarks/bench_epoch.py [--repeats 5] [--n 60000]

The last line printed is one JSON object with the figures.
"""

import argparse
import importlib.util
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from scratchlab.nn.loop import fit
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import make_optimizer

D_IN, D_HIDDEN, D_OUT, BATCH = 784, 100, 10, 100
SPEC = NetworkSpec(D_IN, D_OUT, (D_HIDDEN,), "sigmoid", "softmax", "cross_entropy")


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, D_IN), dtype=np.float32)
    labels = rng.integers(0, D_OUT, n)
    return X, np.eye(D_OUT, dtype=np.float32)[labels], labels


def ours(X, Y, optimizer: str, seed: int) -> float:
    net = build_network(SPEC, np.random.default_rng(seed))
    opt = make_optimizer(optimizer, 0.1 if optimizer == "sgd" else 0.001)
    start = time.perf_counter()
    fit(net, opt, X, Y, epochs=1, batch_size=BATCH, rng=np.random.default_rng(seed), progress=False)
    return time.perf_counter() - start


def torch_epoch(X, labels, seed: int) -> float:
    import torch

    torch.manual_seed(seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(labels)
    model = torch.nn.Sequential(
        torch.nn.Linear(D_IN, D_HIDDEN), torch.nn.Sigmoid(), torch.nn.Linear(D_HIDDEN, D_OUT)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    perm = torch.randperm(len(Xt))
    for i in range(0, len(Xt), BATCH):
        idx = perm[i : i + BATCH]
        opt.zero_grad()
        loss_fn(model(Xt[idx]), yt[idx]).backward()
        opt.step()
    return time.perf_counter() - start


def sklearn_epoch(X, labels, seed: int) -> float:
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(D_HIDDEN,),
        activation="logistic",
        solver="sgd",
        batch_size=BATCH,
        learning_rate_init=0.1,
        momentum=0.0,
        alpha=0.0,
        shuffle=True,
        random_state=seed,
    )
    start = time.perf_counter()
    clf.partial_fit(X, labels, classes=np.arange(D_OUT))
    return time.perf_counter() - start


PAUSE_S = 0.5
RUNNERS = {
    "numpy_sgd": lambda X, Y, labels, seed: ours(X, Y, "sgd", seed),
    "numpy_adam": lambda X, Y, labels, seed: ours(X, Y, "adam", seed),
    "torch_sgd": lambda X, Y, labels, seed: torch_epoch(X, labels, seed),
    "sklearn_sgd": lambda X, Y, labels, seed: sklearn_epoch(X, labels, seed),
}


def _serve(name: str, n: int, conn) -> None:
    """Worker loop: build the data, warm up (caches, thread pools, lazy imports), then time
    one epoch per seed received until ``None``."""
    if name == "torch_sgd":
        import torch

        torch.set_num_threads(2)
    X, Y, labels = make_data(n)
    run = RUNNERS[name]
    run(X, Y, labels, 0)
    conn.send("ready")
    while (seed := conn.recv()) is not None:
        conn.send(run(X, Y, labels, seed))


class Contender:
    """One implementation in its own process, timed on demand."""

    def __init__(self, name: str, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(name, n, child), daemon=True)
        self.process.start()
        assert self.conn.recv() == "ready"

    def epoch(self, seed: int) -> float:
        self.conn.send(seed)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(timeout=30)


def peak_gflops(size: int = 4000, repeats: int = 5) -> float:
    """Best float32 GEMM throughput of ``size`` x ``size`` matrices, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def _peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` where available: ``ru_maxrss`` survives ``exec`` on
    Linux, so a child spawned by a large parent would report the parent's footprint."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_memory(n: int) -> None:
    """Run in a fresh process: peak RSS (MB) of data + one epoch, and the peak of what the
    epoch itself allocates (tracemalloc, on top of the data)."""
    X, Y, _ = make_data(n)
    data_mb = (X.nbytes + Y.nbytes) / 2**20
    tracemalloc.start()
    ours(X, Y, "sgd", 0)
    _, train_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "peak_rss_mb": _peak_rss_mb(),
                "data_mb": data_mb,
                "train_alloc_peak_mb": train_peak / 2**20,
            }
        )
    )


def measure_memory(n: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-memory", "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.n)
        return

    names = ["numpy_sgd", "numpy_adam", "torch_sgd", "sklearn_sgd"]
    if importlib.util.find_spec("torch") is None:
        print("torch not importable: skipped (pip install torch==2.13.0)", file=sys.stderr)
        names.remove("torch_sgd")
    workers = {name: Contender(name, args.n) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for r in range(args.repeats):
            for name, worker in workers.items():
                time.sleep(PAUSE_S)  # let the previous contender's threads go idle
                times[name].append(worker.epoch(r + 1))
    finally:
        for worker in workers.values():
            worker.close()
    median = {name: statistics.median(ts) for name, ts in times.items()}

    gflops = peak_gflops()
    flops = 6 * args.n * (D_IN * D_HIDDEN + D_HIDDEN * D_OUT)
    ideal = flops / (gflops * 1e9)
    memory = measure_memory(args.n)
    torch_s = median.get("torch_sgd")

    print(
        f"epoch of {args.n} x {D_IN}, {D_IN}-{D_HIDDEN}-{D_OUT}, batch {BATCH}, float32; "
        f"median of {args.repeats}"
    )
    print(f"{'implementation':<14}{'median s':>10}{'min s':>9}{'vs torch':>10}{'vs ideal':>10}")
    for name, ts in times.items():
        vs_torch = f"{median[name] / torch_s:.2f}x" if torch_s else "-"
        print(
            f"{name:<14}{median[name]:>10.3f}{min(ts):>9.3f}{vs_torch:>10}"
            f"{median[name] / ideal:>9.2f}x"
        )
    print(f"peak GEMM {gflops:.1f} GFLOP/s; epoch {flops / 1e9:.1f} GFLOP -> ideal {ideal:.3f} s")
    print(
        f"peak RSS of one training run {memory['peak_rss_mb']:.0f} MB (data "
        f"{memory['data_mb']:.0f} MB; the epoch itself allocates at most "
        f"{memory['train_alloc_peak_mb']:.1f} MB)"
    )
    print(
        json.dumps(
            {
                "numpy_epoch_s": round(median["numpy_sgd"], 4),
                "numpy_adam_epoch_s": round(median["numpy_adam"], 4),
                "torch_epoch_s": round(torch_s, 4) if torch_s else None,
                "sklearn_epoch_s": round(median["sklearn_sgd"], 4),
                "ratio_vs_torch": round(median["numpy_sgd"] / torch_s, 3) if torch_s else None,
                "ratio_vs_ideal": round(median["numpy_sgd"] / ideal, 3),
                "adam_vs_sgd": round(median["numpy_adam"] / median["numpy_sgd"], 3),
                "ideal_epoch_s": round(ideal, 4),
                "peak_gemm_gflops": round(gflops, 1),
                "epoch_gflop": round(flops / 1e9, 2),
                "peak_rss_mb": round(memory["peak_rss_mb"], 1),
                "data_mb": round(memory["data_mb"], 1),
                "train_alloc_peak_mb": round(memory["train_alloc_peak_mb"], 2),
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
