"""Messages name the user's own file and the right cure (issue 18, case 6), in-process.

- An error in the user's CSV/XLSX names that file, not the copy the pipeline reads
  (``data/cache/csv-.../`` or ``data/raw/``).
- A damaged ``network.npz`` in the spool names it and how to drop it, not "dvc checkout" (which
  cannot restore a spool file).
- A class with fewer rows than the splits need gets a warning naming it and the split it misses.
- A class absent from the test split is marked in the classification report and left out of
  the macro averages, instead of averaging in a zero that was never measured.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from scratchlab.core.errors import DataError
from scratchlab.data.base import RawDataset
from scratchlab.data.preprocess import preprocess
from scratchlab.data.registry import fetch_dataset, load_dataset
from scratchlab.nn.network import build_network
from scratchlab.nn.persistence import save_network
from scratchlab.pipeline.evaluation import ABSENT, classification_scores
from scratchlab.spec.network import NetworkSpec
from scratchlab.tracking.model import log_spooled_model
from scratchlab.tracking.spool import Spool


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_an_error_in_the_users_table_names_the_users_file(tmp_path: Path, suffix: str) -> None:
    table = pd.DataFrame({"a": [1.0, 2.0, "oops", 4.0], "label": ["x", "y", "x", "y"]})
    user = tmp_path / "mine" / f"table{suffix}"
    user.parent.mkdir()
    (table.to_csv(user, index=False) if suffix == ".csv" else table.to_excel(user, index=False))
    cfg = {"name": "csv", "task": "classification", "path": str(user), "target": "label",
           "sheet": None, "test_fraction": 0.2, "split_seed": 0}
    raw = tmp_path / "data" / "cache" / "csv-0123"
    fetch_dataset(cfg, raw, progress=False)
    assert (raw / user.name).is_file()  # the copy the pipeline reads
    with pytest.raises(DataError) as caught:
        load_dataset(cfg, raw)
    assert str(caught.value) == f"{user}: column 'a' row 3: 'oops' is not a number"


def test_a_damaged_spooled_model_names_it_and_how_to_drop_it(tmp_path: Path,
                                                              tracking_uri: str) -> None:
    client = mlflow.MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    net = build_network(NetworkSpec(4, 3, (5,)), np.random.default_rng(0))
    files = tmp_path / "model"
    save_network(net, files / "network" / "network.npz")
    spool = Spool(run_id, tracking_uri, tmp_path / "spool")
    spool.add({"kind": "model"}, [files / "network"])
    spool.add({"kind": "status", "status": "FINISHED", "end_time": int(time.time() * 1000)})
    weights = spool.dir / "000001.files" / "network" / "network.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError) as caught:
        spool.replay(client, partial(log_spooled_model, run_id, tracking_uri))
    message = str(caught.value)
    assert message.startswith(f"{weights}: damaged network weights (")
    assert f"delete {spool.dir / '000001.json'} to drop that operation" in message
    assert "dvc" not in message and "\n" not in message
    assert [p.name for p in spool.pending()] == ["000001.json", "000002.json"]  # nothing lost


def test_a_class_too_small_for_the_splits_is_named_in_a_warning(caplog) -> None:
    y = np.array([0] * 30 + [1] * 30 + [2] + [3] * 2)
    X = np.random.default_rng(0).normal(size=(len(y), 3))
    raw = RawDataset("csv", "classification", X, y, None, None, ["a", "b", "rare", "pair"],
                     None, None, ["f0", "f1", "f2"])
    with caplog.at_level(logging.WARNING, logger="scratchlab.data.preprocess"):
        splits = preprocess(raw, test_fraction=0.2, split_seed=0, val_fraction=0.1)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "class 'rare' of dataset csv has 1 row, fewer than the splits need (one in each): "
        "none in the validation and test splits",
        "class 'pair' of dataset csv has 2 rows, fewer than the splits need (one in each): "
        "none in the validation split",
    ]
    assert 2 not in splits.test.y and 2 in splits.train.y


def test_a_class_absent_from_the_test_split_is_marked_not_averaged_as_zero() -> None:
    names = ["a", "b", "rare"]
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 1, 1, 1, 2])  # "rare" predicted once, never in the test split
    metrics, files = classification_scores(y_true, np.eye(3)[y_pred], names)
    present = f1_score(y_true, y_pred, labels=[0, 1], average="macro")
    assert metrics["test_macro_f1"] == pytest.approx(present)  # not (f1_a + f1_b + 0) / 3
    report = files["classification_report.json"]
    assert report["rare"] == {"precision": None, "recall": None, "f1-score": None, "support": 0}
    assert report[ABSENT] == ["rare"]
    text = files["classification_report.txt"]
    assert "        rare          -         -         -         0" in text
    assert text.endswith(f"{ABSENT} (no scores, not in the macro avg): rare\n")
    assert {row["class"] for row in files["per_class.json"]} == {"a", "b"}
