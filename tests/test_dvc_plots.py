"""`dvc plots show` reads well: loss and accuracy apart, a colour per series, one confusion
matrix with its counts, per-class scores as bars from a file evaluation writes."""

from __future__ import annotations

import json

import numpy as np
import yaml

from helpers import REPO
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
