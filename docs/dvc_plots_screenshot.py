"""Regenerate docs/dvc-plots.png: the page ``dvc plots show`` writes, as a browser shows it.

Not part of the test suite. Needs Debian's ``chromium`` and ``chromium-driver``, ``npm`` and
Selenium (``apt-get install -y chromium chromium-driver npm && uv pip install selenium``); run
from the repository root with the project's venv active, after ``dvc repro``:

    python docs/dvc_plots_screenshot.py [--out docs/dvc-plots.png]

It runs ``dvc plots show`` (``dvc_plots/index.html``). That page loads Vega, Vega-Lite and
Vega-Embed from a CDN; so that this works offline, the same versions are fetched from the npm
registry (``npm pack``) and the page's script tags pointed at them, in a temp copy. Headless
Chromium (fresh profile) then opens it, waits until all four charts are drawn and saves a
screenshot of the whole page.
"""

from __future__ import annotations

import argparse
import base64
import re
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,900", "--hide-scrollbars",
]  # fmt: skip
CDN = re.compile(r'<script src="https://cdn\.jsdelivr\.net/npm/([\w-]+)@([\d.]+)"')
PLOTS = 4


def local_scripts(html: str, tmp: Path) -> str:
    """The page with each CDN script replaced by the same version's build from npm."""
    def local(match: re.Match) -> str:
        name, version = match.groups()
        subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
        with tarfile.open(tmp / f"{name}-{version}.tgz") as tar:
            tar.extractall(tmp / name, filter="data")
        return f'<script src="{(tmp / name / "package" / "build" / f"{name}.min.js").as_uri()}"'

    return CDN.sub(local, html)


def screenshot(page: Path, out: Path, profile: str) -> None:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 60, poll_frequency=0.5).until(
            lambda d: len(d.find_elements("css selector", ".vega-embed svg, .vega-embed canvas"))
            >= PLOTS)
        time.sleep(1)
        # the whole page, not the window: size the viewport to the content, then capture
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": int(size["width"]), "height": int(size["height"]) + 20,
            "deviceScaleFactor": 1, "mobile": False})
        time.sleep(1)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dvc-plots.png"))
    args = parser.parse_args()
    subprocess.run(["dvc", "plots", "show"], check=True, stdout=subprocess.DEVNULL, timeout=300)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "index.html"
        page.write_text(local_scripts(Path("dvc_plots/index.html").read_text(), Path(tmp)))
        screenshot(page, args.out.resolve(), f"{tmp}/chromium")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
