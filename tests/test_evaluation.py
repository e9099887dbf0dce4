"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from pruning.evaluation import classification_metrics, evaluate_predictions, summarize


def test_metrics_by_hand():
  y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
  y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
  m = classification_metrics(y_true, y_pred, num_classes=4)
  assert m["accuracy"] == pytest.approx(6 / 8)
  assert m["per_class_recall"] == [pytest.approx(0.75), pytest.approx(0.5), pytest.approx(1.0), None]
  assert m["worst_class_recall"] == pytest.approx(0.5)
  assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
  # F1 per class: 2PR/(P+R) with P0 = 3/4, P1 = 1/2, P2 = 1.
  f1 = [2 * 0.75 * 0.75 / 1.5, 2 * 0.5 * 0.5 / 1.0, 1.0]
  assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_summary_over_seeds():
  y_true = np.array([0, 1, 0, 1])
  per_seed = evaluate_predictions(y_true, np.array([[0, 1, 0, 1], [0, 0, 0, 1]]), num_classes=2, seeds=[5, 6])
  assert per_seed["seed"].tolist() == [5, 6]
  summary = summarize(per_seed)
  assert summary["accuracy"] == pytest.approx(0.875) and summary["accuracy_std"] == pytest.approx(0.125)
  assert summary["per_class_recall"] == [pytest.approx(1.0), pytest.approx(0.75)]
