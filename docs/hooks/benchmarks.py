"""MkDocs hook: benchmark figures rendered from what the benchmarks printed, never typed.

``benchmarks/record.py NAME`` keeps a benchmark's JSON line with its date, machine and commit
in ``benchmarks/results/NAME.json``. In a page:

- ``<!-- bench: NAME -->`` becomes when and where it was measured, then its table (a renderer
  below when the benchmark has one, else the lines it printed); a benchmark not recorded yet
  says how to record it;
- ``[[NAME.key]]`` becomes one figure of its JSON (``[[bench_accuracy.fashion_mlp]]``); a key
  that is not there fails the build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
BLOCK = re.compile(r"<!-- bench: ([\w-]+) -->")
VALUE = re.compile(r"\[\[(bench_\w+)\.(\w+)\]\]")


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def provenance(record: dict) -> str:
    machine = record["machine"]
    kernel = machine.get("blas_kernel", "?")
    return (f"Measured {record['date']} with `{record['command']}` at commit "
            f"`{record['commit'][:12]}` on {machine['cpu']}, {machine['cores']} cores, "
            f"{machine['memory_gb']} GB ({machine.get('blas', '?')} "
            f"{machine.get('blas_version', '')} `{kernel}` kernel, NumPy {machine['numpy']}, "
            f"Python {machine['python']}); figures from `benchmarks/results/"
            f"{record['benchmark']}.json`.")


def accuracy_table(r: dict) -> str:
    """bench_accuracy: one row per experiment and seed."""
    rows = ["| experiment | data (train / val / test) | seed | test accuracy | epochs | "
            "training s |", "|---|---|---|---|---|---|"]
    split = " / ".join(map(str, r["digits_keras_mlp_split"]))
    for seed, accuracy in enumerate(r["digits_keras_mlp_accuracies"]):
        rows.append(f"| `keras_mlp` | digits ({split}) | {seed} | {accuracy:.4f} | "
                    f"{r['digits_keras_mlp_epochs']} | {r['digits_keras_mlp_s']} (median) |")
    for name in ("mnist_best", "mnist_two_layer"):
        if f"t10k_{name}" in r:
            t10k = " / ".join(map(str, r["t10k_split"]))
            rows.append(f"| `{name}` | MNIST t10k files split 8000/2000 ({t10k}) | 0 | "
                        f"{r[f't10k_{name}']:.4f} | {r[f't10k_{name}_epochs']} | "
                        f"{r[f't10k_{name}_s']} |")
    for name in ("fashion_mlp", "fashion_best"):
        if name in r:
            rows.append(f"| `{name}` | Fashion-MNIST (54000 / 6000 / 10000) | 0 | "
                        f"{r[name]:.4f} | {r[f'{name}_epochs']} | {r[f'{name}_s']} |")
    target = r["digits_keras_mlp_target"]
    summary = (f"`keras_mlp` over seeds 0-{r['digits_keras_mlp_seeds'] - 1}: mean "
               f"{r['digits_keras_mlp_mean']:.4f}, min {r['digits_keras_mlp_min']:.4f}, max "
               f"{r['digits_keras_mlp_max']:.4f}; {r['digits_keras_mlp_seeds_met']} of "
               f"{r['digits_keras_mlp_seeds']} seeds reach its {target} target, the mean "
               f"{'does' if r['digits_keras_mlp_mean_met'] else 'does not'}.")
    return "\n".join(rows) + "\n\n" + summary


RENDERERS = {"bench_accuracy": accuracy_table}


def block(name: str) -> str:
    record = load(name)
    if record is None:
        return (f'!!! note "Not recorded yet"\n    Run `python benchmarks/record.py {name}` '
                f"on a quiet machine and commit `benchmarks/results/{name}.json`: its figures "
                "then appear here.")
    render = RENDERERS.get(name)
    body = (render(record["results"]) if render else
            "```text\n" + "\n".join(record["output"]) + "\n```")
    return f"{provenance(record)}\n\n{body}"


def value(match: re.Match) -> str:
    name, key = match.groups()
    record = load(name)
    if record is None or key not in record["results"]:
        raise PluginError(f"[[{name}.{key}]]: no such figure in benchmarks/results/{name}.json")
    figure = record["results"][key]
    return f"{figure:.4f}" if isinstance(figure, float) and figure < 1 else str(figure)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook
    markdown = BLOCK.sub(lambda m: block(m.group(1)), markdown)
    return VALUE.sub(value, markdown)
