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


def rank_auroc(positive: np.ndarray, score: np.ndarray) -> float:
  """AUROC as the probability a positive outranks a negative (ties count half)."""
  pos, neg = score[positive], score[~positive]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
  """Mean over positives of the precision at each positive's rank (no ties here)."""
  order = np.argsort(-score)
  hits = positive[order]
  precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return precision_at[hits].mean()


def test_one_vs_rest_auroc_and_auprc_by_hand():
  rng = np.random.default_rng(0)
  y_true = rng.integers(0, 3, size=60)
  logits = rng.normal(size=(60, 4)) + 1.5 * np.eye(4)[y_true]
  probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  m = classification_metrics(y_true, logits.argmax(1), num_classes=4, probabilities=probabilities)
  # Class 3 never occurs, so it is left out of the macro average.
  assert m["auroc"] == pytest.approx(
    np.mean([rank_auroc(y_true == c, probabilities[:, c]) for c in range(3)]), abs=1e-12
  )
  assert m["auprc"] == pytest.approx(
    np.mean([average_precision(y_true == c, probabilities[:, c]) for c in range(3)]), abs=1e-12
  )
