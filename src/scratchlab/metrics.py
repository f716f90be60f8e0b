"""Test-set scores and the report files that go with them (scikit-learn's metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from scratchlab import plots

Files = dict[str, Any]


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], title: str
) -> tuple[dict[str, float], Files, Figure]:
    """Accuracy, loss, per-class report and confusion matrix (JSON for DVC and MLflow, PNG)."""
    # scikit-learn takes over a second to import: only the processes that score pay for it
    from sklearn.metrics import classification_report, confusion_matrix

    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(class_names)))
    names = [str(c) for c in class_names]
    p_true = probabilities[np.arange(len(y_true)), y_true].astype(np.float64)
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=names, output_dict=True, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    metrics = {
        "test_accuracy": float(report["accuracy"]),
        "test_loss": float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0)))),
        "test_macro_f1": float(report["macro avg"]["f1-score"]),
    }
    files: Files = {
        "classification_report.txt": classification_report(
            y_true, y_pred, labels=labels, target_names=names, digits=4, zero_division=0
        ),
        "classification_report.json": report,
        "confusion_matrix.json": {"labels": names, "matrix": matrix.tolist()},
        # one row per test sample: the shape DVC's `confusion` plot template expects
        "confusion.json": [
            {"actual": names[t], "predicted": names[p]}
            for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)
        ],
    }
    figure = plots.confusion_figure(
        matrix, names, f"{title}\ntest accuracy {metrics['test_accuracy']:.4f}"
    )
    return metrics, files, figure


def regression_metrics(
    y_true: np.ndarray, predicted: np.ndarray, title: str
) -> tuple[dict[str, float], Files, Figure]:
    """MSE/RMSE/MAE/R^2 and a predicted-vs-actual scatter."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = y_true.reshape(len(y_true), -1).astype(np.float64)
    predicted = predicted.reshape(len(predicted), -1).astype(np.float64)
    mse = float(mean_squared_error(y_true, predicted))
    metrics = {
        "test_mse": mse,
        "test_rmse": float(np.sqrt(mse)),
        "test_mae": float(mean_absolute_error(y_true, predicted)),
        "test_r2": float(r2_score(y_true, predicted)),
    }
    files: Files = {
        "predictions.json": [
            {"actual": float(a), "predicted": float(p)}
            for a, p in zip(y_true[:, 0], predicted[:, 0], strict=True)
        ]
    }
    figure = plots.regression_figure(
        y_true[:, 0], predicted[:, 0], f"{title}\nR^2 {metrics['test_r2']:.4f}"
    )
    return metrics, files, figure
