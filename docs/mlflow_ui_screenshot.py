"""Regenerate docs/mlflow-sweep.png: what ``scratchlab ui``'s link shows after a small lr sweep.

Not part of the test suite. Needs Debian's ``chromium`` and ``chromium-driver`` and Selenium
(``apt-get install -y chromium chromium-driver && uv pip install selenium``); run from the
repository root with the project's venv active:

    python docs/mlflow_ui_screenshot.py [--out docs/mlflow-sweep.png]

It runs ``python -m scratchlab.train -m optimizer.lr=0.01,0.1,1 train.epochs=3 ...`` into a
temp SQLite store, starts ``scratchlab ui`` on a free loopback port, opens the link it prints in
headless Chromium (fresh profile), expands the sweep's parent run, types ``loss`` in the chart
search and saves the screenshot; then stops the server. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1500,1100",
]  # fmt: skip
SWEEP = ["optimizer.lr=0.01,0.1,1", "train.epochs=3", "train.progress=false",
         "tracking.log_model=false"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ui(env: dict, port: int) -> tuple[subprocess.Popen, str]:
    """``scratchlab ui`` in its own process group, and the link it printed."""
    scratchlab = Path(sys.executable).with_name("scratchlab")
    proc = subprocess.Popen([str(scratchlab), "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)  # fmt: skip
    for _ in range(2):
        line = proc.stdout.readline()
        if "://" in line and "#/experiments/" in line:
            return proc, line.split(": ", 1)[1].strip()
    proc.kill()
    raise SystemExit(f"scratchlab ui printed no link (last line: {line!r})")


def screenshot(url: str, out: Path, profile: str) -> None:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    wait = WebDriverWait(driver, 120, poll_frequency=0.5)  # the server may still be starting
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                driver.get(url)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        expander = (By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']")
        wait.until(ec.element_to_be_clickable(expander)).click()
        for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
            close.click()  # the MLflow Assistant panel
        search = (By.CSS_SELECTOR, "input[placeholder='Search metric charts']")
        wait.until(ec.element_to_be_clickable(search)).send_keys("loss")
        wait.until(lambda d: len(d.find_elements(By.XPATH, "//*[text()='val_loss']")) > 0)
        time.sleep(3)  # let the charts finish drawing
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow-sweep.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        subprocess.run([sys.executable, "-m", "scratchlab.train", "-m", *SWEEP,
                        f"hydra.sweep.dir={tmp}/multirun"], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=600)  # fmt: skip
        proc, url = start_ui(env, free_port())
        try:
            print(url)
            screenshot(url, args.out, f"{tmp}/chromium")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
