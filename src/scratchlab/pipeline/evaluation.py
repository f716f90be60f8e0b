"""Score a trained network on the test split: metrics, report files and a figure. No tracker.

The classification report and confusion matrix are computed here in NumPy, in the layout of
scikit-learn's ``classification_report`` (tested against it), so scoring does not pay
scikit-learn's second-long import. One difference: a class with no row in the test split (a
rare class the split could not give one) is marked absent and left out of the macro averages,
where scikit-learn averages in a zero it never measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchlab.core.files import write_json_atomic, write_text_atomic
from scratchlab.core.numerics import blas_threads
from scratchlab.nn.network import Network
from scratchlab.spec.splits import Splits

METRICS_FILE = "metrics.json"
ABSENT = "absent from the test split"


@dataclass
class Evaluation:
    """Test metrics, the report files (name -> text or JSON-able object) and the figure."""

    metrics: dict[str, float]
    files: dict[str, Any]
    figure_name: str
    figure: Any  # matplotlib Figure


def evaluate(net: Network, splits: Splits, title: str, deterministic: bool = True
                ) -> Evaluation:
    """Predict the test split and score it (classification or regression, by ``splits.task``).

    ``deterministic`` (``train.deterministic``): predict on one BLAS thread, so the metrics too
    are the same on any core count."""
    from scratchlab.pipeline import plots  # matplotlib: only the processes that score pay for it

    with blas_threads(deterministic):
        predicted = net.predict(splits.test.X)
    if splits.task == "classification":
        metrics, files = classification_scores(splits.test.y, predicted, splits.class_names)
        matrix = np.asarray(files["confusion_matrix.json"]["matrix"])
        figure = plots.confusion_figure(
            matrix, splits.class_names, f"{title}\ntest accuracy {metrics['test_accuracy']:.4f}"
        )
        return Evaluation(metrics, files, "confusion_matrix.png", figure)
    metrics, files = regression_scores(splits.test.y, predicted)
    figure = plots.regression_figure(
        np.ravel(splits.test.y), predicted[:, 0], f"{title}\nR^2 {metrics['test_r2']:.4f}"
    )
    return Evaluation(metrics, files, "predictions.png", figure)


def classification_scores(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Accuracy, loss, macro F1; per-class report (text + JSON), confusion matrix (JSON)."""
    names = [str(c) for c in class_names]
    k = len(names)
    y_pred = probabilities.argmax(axis=1)
    matrix = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    report = _report(matrix, names)
    p_true = probabilities[np.arange(len(y_true)), y_true].astype(np.float64)
    metrics = {
        "test_accuracy": float(report["accuracy"]),
        "test_loss": float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0)))),
        "test_macro_f1": float(report["macro avg"]["f1-score"]),
    }
    files = {
        "classification_report.txt": _report_text(report, names),
        "classification_report.json": report,
        "confusion_matrix.json": {"labels": names, "matrix": matrix.tolist()},
        # long form, one row per class and score: dvc.yaml's per-class bar chart
        "per_class.json": [
            {"class": name, "metric": metric, "value": report[name][metric]}
            for name in names for metric in ("precision", "recall", "f1-score")
            if report[name]["support"]
        ],
        # one row per test sample: the shape DVC's `confusion` plot template expects
        "confusion.json": [
            {"actual": names[t], "predicted": names[p]}
            for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)
        ],
    }
    return metrics, files


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def _report(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-class scores and their averages; a class with no test row has none (None) and is
    listed under ``absent from the test split``, not averaged in as a zero."""
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    present = support > 0
    precision = _ratio(tp, matrix.sum(axis=0).astype(np.float64))
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = int(support.sum())
    report: dict[str, Any] = {
        name: ({"precision": float(p), "recall": float(r), "f1-score": float(f), "support": int(s)}
               if s else {"precision": None, "recall": None, "f1-score": None, "support": 0})
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    }
    report["accuracy"] = float(tp.sum() / total) if total else 0.0
    weights = support / total if total else np.zeros(len(names))
    for label, average in (("macro avg", np.mean), ("weighted avg", None)):
        values = [precision, recall, f1]
        report[label] = {
            key: float(average(v[present]) if average else np.sum(v * weights))
            if present.any() else 0.0
            for key, v in zip(("precision", "recall", "f1-score"), values, strict=True)
        }
        report[label]["support"] = total
    absent = [name for name, s in zip(names, support, strict=True) if not s]
    if absent:
        report[ABSENT] = absent
    return report


def _report_text(report: dict[str, Any], names: list[str], digits: int = 4) -> str:
    """The report laid out as ``sklearn.metrics.classification_report(..., digits=4)``; a class
    absent from the test split shows dashes, and a last line says it is not averaged in."""
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    lines = [f"{'':>{width}s} " + "".join(f" {h:>9}" for h in
                                           ("precision", "recall", "f1-score", "support")), ""]

    def row(label: str, entry: dict[str, Any]) -> str:
        scores = "".join(f" {'-':>9}" if entry[k] is None else f" {entry[k]:>9.{digits}f}"
                         for k in ("precision", "recall", "f1-score"))
        return f"{label:>{width}s} {scores} {entry['support']:>9}"

    lines += [row(name, report[name]) for name in names] + [""]
    total = report["macro avg"]["support"]
    lines.append(f"{'accuracy':>{width}s} " + f" {'':>9}" * 2
                 + f" {report['accuracy']:>9.{digits}f} {total:>9}")
    lines += [row(label, report[label]) for label in ("macro avg", "weighted avg")]
    if ABSENT in report:
        lines += ["", f"{ABSENT} (no scores, not in the macro avg): "
                      f"{', '.join(report[ABSENT])}"]
    return "\n".join(lines) + "\n"


def regression_scores(
    y_true: np.ndarray, predicted: np.ndarray
) -> tuple[dict[str, float], dict[str, Any]]:
    """MSE/RMSE/MAE/R^2 (averaged over outputs) and the predictions as JSON rows."""
    actual = y_true.reshape(len(y_true), -1).astype(np.float64)
    pred = predicted.reshape(len(predicted), -1).astype(np.float64)
    error = pred - actual
    mse = float(np.mean(error**2))
    variance = np.sum((actual - actual.mean(axis=0)) ** 2, axis=0)
    residual = np.sum(error**2, axis=0)
    r2 = np.where(variance > 0, 1.0 - residual / np.where(variance > 0, variance, 1.0),
                  np.where(residual > 0, 0.0, 1.0))
    metrics = {"test_mse": mse, "test_rmse": float(np.sqrt(mse)),
               "test_mae": float(np.mean(np.abs(error))), "test_r2": float(np.mean(r2))}
    rows = [{"actual": float(a), "predicted": float(p)}
            for a, p in zip(actual[:, 0], pred[:, 0], strict=True)]
    return metrics, {"predictions.json": rows}


def write_reports(evaluation: Evaluation, out_dir: Path, metrics_path: Path | None = None
                  ) -> list[Path]:
    """Every report file, the figure and ``metrics.json`` (by default in ``out_dir`` too)."""
    from scratchlab.pipeline import plots

    metrics_path = metrics_path or out_dir / METRICS_FILE
    write_json_atomic(metrics_path, evaluation.metrics)
    written = [metrics_path]
    for name, content in evaluation.files.items():
        writer = write_text_atomic if isinstance(content, str) else write_json_atomic
        writer(out_dir / name, content)
        written.append(out_dir / name)
    plots.save_figure(evaluation.figure, out_dir / evaluation.figure_name)
    return [*written, out_dir / evaluation.figure_name]


def record_evaluation(recorder: Any, evaluation: Evaluation, files: list[Path], net: Network,
                      input_example: np.ndarray | None) -> None:
    """Test metrics and report files on the run (a ``RunRecorder``); the model too, unless
    ``input_example`` is None (``tracking.log_model=false``)."""
    recorder.log_metrics(evaluation.metrics)
    recorder.log_artifacts(files, "evaluation")
    if input_example is not None:
        recorder.log_model(net, input_example)
