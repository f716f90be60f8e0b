"""`dvc plots show` reads well: loss and accuracy apart with a colour per series, one confusion
matrix with counts, per-class scores as bars from a file evaluation writes.

In-process: DVC's own plot machinery (``repo.plots.show`` + the renderers ``dvc plots show``
uses) fills the templates of ``.dvc/plots/`` with files the project's code writes, in a temp
DVC repo holding this ``dvc.yaml``; the checks read the Vega-Lite specs DVC produces.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import REPO
from scratchlab.evaluation import classification_scores, write_reports
from scratchlab.runs import _write_history

PLOTS = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]


def _definitions() -> dict[str, dict]:
    return {name: props for entry in PLOTS for name, props in entry.items()}


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The filled Vega-Lite spec of every plot, as `dvc plots show` renders them."""
    from dvc.render.match import match_defs_renderers
    from dvc.repo import Repo
    from matplotlib.figure import Figure

    from scratchlab.evaluation import Evaluation

    root = tmp_path_factory.mktemp("plots")
    Repo.init(str(root), no_scm=True).close()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")
    (root / "models").mkdir()
    _write_history({"loss": [2.0, 1.0, 0.5], "accuracy": [0.3, 0.6, 0.8],
                    "val_loss": [2.1, 1.2, 0.7], "val_accuracy": [0.3, 0.5, 0.7]}, 3,
                   root / "models")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet(np.ones(3), 60)
    metrics, files = classification_scores(y, probabilities, ["a", "b", "c"])
    write_reports(Evaluation(metrics, files, "confusion_matrix.png", Figure(figsize=(1, 1))),
                  root / "reports" / "eval", root / "reports" / "metrics.json")
    with Repo(str(root)) as repo:
        data = repo.plots.show()
        found = match_defs_renderers(data=data, out=str(root / "out"),
                                     templates_dir=repo.plots.templates_dir)
        return {r.renderer.name: r.renderer.get_filled_template() for r in found}


def _layers(spec: dict) -> list[dict]:
    inner = spec.get("spec", spec)
    return [inner, *inner.get("layer", [])]


def test_loss_and_accuracy_are_separate_charts() -> None:
    plots = _definitions()
    history = {name: props["y"]["models/history.csv"] for name, props in plots.items()
               if "models/history.csv" in props.get("y", {})}
    assert history == {"loss": ["loss", "val_loss"], "accuracy": ["accuracy", "val_accuracy"]}


def test_every_series_has_its_own_colour(specs) -> None:
    for name, series in (("loss", {"loss", "val_loss"}),
                         ("accuracy", {"accuracy", "val_accuracy"})):
        spec = specs[name]
        assert "<DVC_METRIC" not in json.dumps(spec)  # every anchor filled
        color = spec["encoding"]["color"]
        points = spec["data"]["values"]
        assert {p[color["field"]] for p in points} == series  # colour = which series
        assert len(set(color["scale"]["range"])) >= len(series)
        assert spec["encoding"]["strokeDash"]["field"] == "rev"  # dashes: revisions only


def test_one_confusion_matrix_and_it_shows_counts(specs) -> None:
    confusion = [name for name, props in _definitions().items()
                 if "confusion" in str(props.get("template", "")) or "confusion" in name
                 or any("confusion" in str(f) for f in props.get("y", {}))]
    assert confusion == ["confusion"]
    assert not any(str(f).endswith(".png") for entry in PLOTS for f in entry)
    layers = _layers(specs["confusion"])
    text = [layer for layer in layers if layer.get("mark", {}).get("type") == "text"]
    assert len(text) == 1 and text[0]["encoding"]["text"] == {"field": "count",
                                                               "type": "quantitative"}
    assert "params" not in specs["confusion"]  # shown always, not behind a checkbox


def test_per_class_scores_are_grouped_bars_of_a_file_evaluation_writes(specs) -> None:
    props = _definitions()["per_class"]
    assert props["y"] == {"reports/eval/per_class.json": "value"} and props["x"] == "class"
    spec = specs["per_class"]
    inner = spec["spec"]
    assert inner["mark"]["type"] == "bar"
    assert inner["encoding"]["color"]["field"] == inner["encoding"]["xOffset"]["field"] == "metric"
    rows = spec["data"]["values"]
    assert {r["metric"] for r in rows} == {"precision", "recall", "f1-score"}
    assert {r["class"] for r in rows} == {"a", "b", "c"} and len(rows) == 9
    evaluate = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]
    assert "reports/eval" in evaluate["outs"]  # the file is a stage output DVC tracks
