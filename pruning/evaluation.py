"""Test-split metrics through scikit-learn: accuracy, balanced accuracy, per-class
recall, worst-class recall and macro-F1."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int) -> dict:
  """Metrics of one model's predictions. Classes absent from `y_true` are left
  out of the per-class recall and of its minimum."""
  labels = np.arange(num_classes)
  present = np.isin(labels, y_true)
  recall = metrics.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
  return {
      "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
      "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred)),
      "worst_class_recall": float(recall[present].min()),
      "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=labels[present], average="macro",
                                         zero_division=0)),
      "per_class_recall": [float(r) if p else None for r, p in zip(recall, present)],
  }


def evaluate_predictions(y_true: np.ndarray, predictions: np.ndarray, *, num_classes: int,
                         seeds) -> pd.DataFrame:
  """One row per seed: the metrics of `predictions[s]` (an (S, N) array)."""
  rows = []
  for seed, y_pred in zip(seeds, predictions):
    rows.append({"seed": int(seed), **classification_metrics(y_true, y_pred, num_classes=num_classes)})
  return pd.DataFrame(rows)


SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "worst_class_recall", "macro_f1")


def summarize(per_seed: pd.DataFrame) -> dict:
  """Mean and standard deviation over seeds of each scalar metric."""
  summary = {}
  for metric in SUMMARY_METRICS:
    values = per_seed[metric].to_numpy(np.float64)
    summary[metric] = float(values.mean())
    summary[f"{metric}_std"] = float(values.std())
  recall = np.array([[np.nan if r is None else r for r in row] for row in per_seed["per_class_recall"]],
                    dtype=np.float64)
  summary["per_class_recall"] = [None if np.isnan(c).all() else float(np.nanmean(c)) for c in recall.T]
  return summary
