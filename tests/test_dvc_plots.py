"""`dvc plots show` reads well: loss and accuracy apart, a colour per series, one confusion
matrix with its counts, per-class scores as bars from a file evaluation writes; and its page
draws them with no network."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_render.html import PAGE_HTML
from dvc_render.vega import VegaRenderer

from helpers import REPO, copy_repo, project_env
from scratchlab.pipeline.evaluation import classification_scores

PLOTS = {name: spec for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
         for name, spec in entry.items()}


def _template(name: str) -> dict:
    return json.loads((REPO / ".dvc" / "plots" / f"{name}.json").read_text())


def _fields(plot: dict) -> set[str]:
    return {field for fields in plot["y"].values()
            for field in (fields if isinstance(fields, list) else [fields])}


def test_loss_and_accuracy_are_separate_charts_coloured_by_series() -> None:
    assert _fields(PLOTS["loss"]) == {"loss", "val_loss"}
    assert _fields(PLOTS["accuracy"]) == {"accuracy", "val_accuracy"}
    for name in ("loss", "accuracy"):
        encoding = _template(PLOTS[name]["template"])["encoding"]
        assert encoding["color"]["field"] == "field"  # each y column its own colour


def test_one_confusion_matrix_with_its_counts_always_shown() -> None:
    confusions = [p for p in PLOTS.values() if "confusion" in p.get("template", "")]
    assert len(confusions) == 1 and not any(str(name).endswith(".png") for name in PLOTS)
    layers = _template(confusions[0]["template"])["spec"]["layer"]
    text = next(layer for layer in layers if layer.get("mark") == "text")
    assert text["encoding"]["text"] == {"field": "xy_count", "type": "quantitative"}


def test_per_class_bars_read_what_evaluation_writes() -> None:
    plot = PLOTS["per_class"]
    assert _template(plot["template"])["mark"]["type"] == "bar"
    (path, field), = plot["y"].items()
    names = ["a", "b", "c"]
    _, files = classification_scores(np.array([0, 1, 2, 2]), np.eye(3)[[0, 1, 1, 2]], names)
    rows = files[path.rsplit("/", 1)[1]]
    assert {(r["class"], r["metric"]) for r in rows} == {
        (n, m) for n in names for m in ("precision", "recall", "f1-score")}
    assert all(set(r) == {plot["x"], "metric", field} for r in rows)
    assert next(r for r in rows if r["class"] == "b" and r["metric"] == "precision")["value"] == 0.5


# --- the page `dvc plots show` writes draws its charts with no network -----------------------

PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const coloured = [...document.querySelectorAll("canvas")].map((canvas) => {
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;  // pixels of a data colour (lines, bars, cells), not the grey of axes and text
    for (let i = 0; i < px.length; i += 4) {
      const [r, g, b] = [px[i], px[i + 1], px[i + 2]];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 40) n++;
    }
    return n;
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(coloured);
  document.body.appendChild(out);
}, 3000));
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "headless Chromium not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _offline() -> list[str]:
    """Run in a network namespace of its own (loopback only, down) when allowed."""
    try:
        subprocess.run(["unshare", "--net", "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return ["unshare", "--net"]


def _coloured_pixels_per_chart(page: Path, profile: Path) -> list[int]:
    """Open ``page`` in headless Chromium with no network; each canvas's coloured pixels."""
    probed = page.with_name("probed.html")
    html = page.read_text()
    end = html.rindex("</body>")  # the last: vega-embed's code holds one in a string
    probed.write_text(html[:end] + PROBE + html[end:])
    dom = subprocess.run(
        [*_offline(), _chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
         f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--dump-dom",
         probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, f"the page never finished loading:\n{dom[-2000:]}"
    return json.loads(found.group(1))


def _plot_inputs(root: Path) -> None:
    """What training and evaluation write for the four plots (history, confusion, per class)."""
    (root / "models").mkdir()
    rows = ["epoch,loss,val_loss,accuracy,val_accuracy"]
    rows += [f"{e},{2 / e},{2.2 / e},{1 - 0.5 / e},{1 - 0.6 / e}" for e in range(1, 11)]
    (root / "models" / "history.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probabilities = np.eye(4)[np.where(rng.random(200) < 0.8, y, rng.integers(0, 4, 200))]
    _, files = classification_scores(y, probabilities, ["a", "b", "c", "d"])
    (root / "reports" / "eval").mkdir(parents=True)
    for name in ("confusion.json", "per_class.json"):
        (root / "reports" / "eval" / name).write_text(json.dumps(files[name]))


@pytest.mark.slow
def test_dvc_plots_show_draws_every_chart_offline(tmp_path: Path) -> None:
    """`dvc plots show` fills .dvc/plots_page.html (the Vega libraries inlined): in Chromium
    with the network off each of its four charts draws its data; DVC's own page (Vega from a
    CDN) draws nothing there, so the check can fail."""
    root = copy_repo(tmp_path / "project")
    _plot_inputs(root)
    env = project_env(root, f"sqlite:///{tmp_path / 'mlflow.db'}")
    subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "ours")], cwd=root, env=env,
                   check=True, capture_output=True)
    drawn = _coloured_pixels_per_chart(tmp_path / "ours" / "index.html", tmp_path / "profile")
    assert len(drawn) == len(PLOTS) and min(drawn) > 200, drawn

    (tmp_path / "cdn.html").write_text(PAGE_HTML)
    subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "cdn"), "--html-template",
                    str(tmp_path / "cdn.html")], cwd=root, env=env, check=True,
                   capture_output=True)
    assert _coloured_pixels_per_chart(tmp_path / "cdn" / "index.html", tmp_path / "p2") == []


def test_the_offline_page_inlines_what_dvcs_page_loads() -> None:
    """The libraries inlined in .dvc/plots_page.html are the versions DVC's own page names (a
    DVC upgrade that changes them fails here: run `python docs/plots_page.py`), and dvc uses
    the page."""
    page = (REPO / ".dvc" / "plots_page.html").read_text()
    cdn = re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+@[\d.]+)", VegaRenderer.SCRIPTS)
    inlined = re.findall(r"<!-- ([\w-]+@[\d.]+) from the npm registry", page)
    assert inlined == cdn and page.count("<script>") == len(cdn)
    assert "{plot_divs}" in page and "{scripts}" not in page and "cdn.jsdelivr" not in page
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert config["plots"]["html_template"] == "plots_page.html"
