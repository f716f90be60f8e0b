"""Regenerate the figures and the table of docs/learning-rates.md.

Not part of the test suite. From the repository root with the project's venv active:

    python docs/learning_rates_figures.py            # docs/lr-schedules.png, docs/lr-find*.png
    python docs/learning_rates_figures.py --table    # and the suggestion rules compared (~5 min)

The figures take seconds; ``--table`` runs the range test of 8 digits configs with 2 seeds and
trains each config (40 epochs, seed 0) at its shipped lr and at each rule's suggestion, printing
the Markdown table of test accuracies.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scratchlab import api
from scratchlab.nn.range_test import suggest
from scratchlab.nn.schedules import make_schedule
from scratchlab.pipeline.lrfind import describe_config, lr_find, lr_find_figure
from scratchlab.pipeline.plots import save_figure

DOCS = Path(__file__).resolve().parent
EPOCHS, LR = 20, 0.1
SCHEDULES = [
    ("constant", {}, "constant"),
    ("constant", {"warmup_epochs": 3}, "constant, warmup_epochs=3"),
    ("step", {"step_size": 5, "gamma": 0.5}, "step, step_size=5, gamma=0.5"),
    ("exponential", {"gamma": 0.85}, "exponential, gamma=0.85"),
    ("cosine", {"warmup_epochs": 2, "min_lr": 0.005}, "cosine, warmup_epochs=2, min_lr=0.005"),
    ("onecycle", {}, "onecycle (pct_start=0.3, div_factor=25)"),
]
CONFIGS = ["", "optimizer=adam", "optimizer=sgd", "optimizer=nesterov", "optimizer=rmsprop",
           "optimizer=adagrad", "model=mlp optimizer=adam", "model=mlp optimizer=momentum"]
FAST = ("train.progress=false", "tracking.log_model=false")


def schedules_figure() -> Figure:
    fig = Figure(figsize=(11, 5.6), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True, sharey=True)
    t = np.linspace(0, EPOCHS, 20 * 200, endpoint=False)  # 200 mini-batches an epoch
    for ax, (name, params, label) in zip(axes.flat, SCHEDULES, strict=True):
        schedule = make_schedule(name, LR, EPOCHS, **params)
        ax.plot(t, [schedule(x) for x in t], color="C0")
        epochs = np.arange(EPOCHS)
        ax.plot(epochs, [schedule(e) for e in epochs], ".", color="C3", markersize=4)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("lr (optimizer.lr = 0.1)")
    fig.suptitle(f"optimizer.schedule over {EPOCHS} epochs: the lr of every mini-batch (line) "
                 "and the lr logged per epoch (dots)", fontsize=10)
    return fig


def steepest(test) -> float:
    smoothed, lrs = np.array(test.smoothed), np.array(test.lrs)
    return float(lrs[np.argmin(np.gradient(smoothed, np.log10(lrs)))])


def minimum_over_10(test) -> float:
    return float(test.lrs[int(np.argmin(test.smoothed))] / 10)


def rules_table() -> str:
    rules = {"valley": lambda test: suggest(test), "minimum / 10": minimum_over_10,
             "steepest": steepest}
    rows = ["| config | shipped lr | " + " | ".join(rules) + " |",
            "|---|---|" + "---|" * len(rules)]
    for overrides in CONFIGS:
        over = overrides.split()
        splits = api.load_data(api.config(*over, *FAST))

        @functools.lru_cache
        def accuracy(lr: float, over=tuple(over), splits=splits) -> float:
            config = api.config(*over, f"optimizer.lr={lr}", *FAST)
            trained = api.train(config, splits)
            return api.evaluate(config, trained.net, splits).metrics["test_accuracy"]

        shipped = api.config(*over, *FAST).optimizer.hyper["lr"]
        cells = {rule: [] for rule in rules}
        for seed in (0, 1):
            found = lr_find(api.config(*over, f"train.seed={seed}", *FAST), splits)
            for rule, pick in rules.items():
                lr = float(f"{pick(found.test):.3g}")
                cells[rule].append(f"{lr:.2g}: {accuracy(lr):.3f}")
        rows.append(f"| {overrides or '(default)'} | {shipped}: {accuracy(shipped):.3f} | "
                    + " | ".join(", ".join(cells[rule]) for rule in rules) + " |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="also compare the rules (~5 min)")
    args = parser.parse_args()
    save_figure(schedules_figure(), DOCS / "lr-schedules.png")
    for overrides, name in (([], "lr-find.png"), (["model=mlp", "optimizer=adam"],
                                                  "lr-find-adam.png")):
        config = api.config(*overrides, *FAST)
        found = lr_find(config, api.load_data(config))
        save_figure(lr_find_figure(found, describe_config(config)), DOCS / name)
        print(f"{name}: suggested {found.suggestion:.3g}")
    if args.table:
        print(rules_table())


if __name__ == "__main__":
    main()
