"""Regenerate docs/dvc-plots.png: what ``dvc plots show`` draws for the default pipeline.

Not part of the test suite. Needs Debian's ``chromium``; the page draws offline (the Vega
libraries are inlined in ``.dvc/plots_page.html``). Run from the repository root after
``dvc repro``:

    python docs/dvc_plots_screenshot.py [--out docs/dvc-plots.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dvc-plots.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dvc", "plots", "show", "-o", tmp], check=True, capture_output=True)
        # virtual time runs until Vega has drawn (no timers left), at most 30 s of it
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
                        "--virtual-time-budget=30000", "--window-size=1500,1000",
                        f"--screenshot={args.out.resolve()}", Path(tmp, "index.html").as_uri()],
                       check=True, capture_output=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
