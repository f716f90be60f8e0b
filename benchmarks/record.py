"""Run a benchmark and keep what it printed: ``benchmarks/results/<name>.json``.

Every benchmark ends with one JSON line of figures. This runs one (its output streams through
as usual), takes that line, and writes it with the date, the machine, the commit and the
command, so the docs' tables (rendered from these files by ``docs/hooks/benchmarks.py``) say
when and where each number was measured and can never drift from what was measured.

    .venv/bin/python benchmarks/record.py bench_accuracy [its arguments...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> dict:
    """The facts a reader needs to compare two measurements: CPU, cores, memory, BLAS."""
    from scratchlab.core.numerics import numeric_environment

    numeric = {k.removeprefix("numeric."): v for k, v in numeric_environment(False).items()}
    numeric.pop("deterministic", None)
    numeric.pop("blas_threads", None)
    memory_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal:")), 0)
    return {"host": platform.node(), "cores": os.cpu_count(),
            "memory_gb": round(memory_kb / 2**20, 1),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), **numeric}


def commit() -> str:
    from scratchlab.core.paths import git_commit

    return git_commit()


def last_json(lines: list[str]) -> dict:
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("the benchmark printed no JSON line: nothing recorded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", help="a script in benchmarks/, e.g. bench_accuracy")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")
    args = parser.parse_args()
    name = args.benchmark.removesuffix(".py")
    script = HERE / f"{name}.py"
    if not script.is_file():
        raise SystemExit(f"{script}: no such benchmark")
    command = [sys.executable, str(script), *args.args]
    started, measured = datetime.datetime.now(datetime.UTC), commit()  # the code it ran
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=HERE.parent) as proc:
        lines = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if proc.returncode:
        raise SystemExit(f"{name} exited {proc.returncode}: nothing recorded")
    record = {
        "benchmark": name,
        "command": shlex.join(["python", f"benchmarks/{name}.py", *args.args]),
        "date": started.strftime("%Y-%m-%d"),
        "started_utc": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.datetime.now(datetime.UTC) - started).total_seconds()),
        "commit": measured,
        "machine": machine(),
        "output": [line.rstrip("\n") for line in lines[:-1]],
        "results": last_json(lines),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
