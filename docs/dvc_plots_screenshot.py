"""Regenerate docs/dvc-plots.png: what ``dvc plots show`` draws for the default pipeline.

Not part of the test suite. Needs Debian's ``chromium`` and ``chromium-driver``, Selenium
(``uv pip install selenium``) and npm (to fetch the Vega libraries the page loads from a CDN,
for machines without one). Run from the repository root after ``dvc repro``:

    python docs/dvc_plots_screenshot.py [--out docs/dvc-plots.png]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--window-size=1500,1100"]


def local_libraries(page: Path) -> Path:
    """A copy of DVC's page loading vega/vega-lite/vega-embed from files beside it."""
    html = page.read_text()
    for package in re.findall(r'src="https://cdn\.jsdelivr\.net/npm/([\w-]+@[\d.]+)"', html):
        name = package.split("@")[0]
        subprocess.run(["npm", "pack", package, "--silent"], cwd=page.parent, check=True,
                       capture_output=True)
        tgz = next(page.parent.glob(f"{name}-*.tgz"))
        with tarfile.open(tgz) as tar:
            member = tar.getmember(f"package/build/{name}.min.js")
            member.name = f"{name}.min.js"
            tar.extract(member, page.parent, filter="data")
        html = html.replace(f"https://cdn.jsdelivr.net/npm/{package}", f"{name}.min.js")
    local = page.with_name("local.html")
    local.write_text(html)
    return local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dvc-plots.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dvc", "plots", "show", "-o", tmp], check=True, capture_output=True)
        page = local_libraries(Path(tmp) / "index.html")
        options = Options()
        for flag in [*FLAGS, f"--user-data-dir={tmp}/profile"]:
            options.add_argument(flag)
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        driver = webdriver.Chrome(options=options)
        try:
            driver.get(page.as_uri())
            time.sleep(4)  # vega renders asynchronously
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
