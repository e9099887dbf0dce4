"""Test-split metrics through scikit-learn: accuracy, balanced accuracy, per-class
recall, worst-class recall, macro-F1, and one-vs-rest AUROC and AUPRC.

AUROC and AUPRC are macro averages of one-vs-rest scores over the classes
present in `y_true`, from the predicted class probabilities. Both are
reported because AUPRC can favour gains on high-prevalence classes under
imbalance (McDermott et al., 2024).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def one_vs_rest_classes(y_true: np.ndarray):
  """(label, positive mask) of each class with a one-vs-rest curve: present in
  `y_true`, and not the only class there."""
  for label in np.unique(y_true):
    positive = y_true == label
    if not positive.all():
      yield int(label), positive


def one_vs_rest_areas(y_true: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-class one-vs-rest (AUROC, AUPRC), each (C,); NaN for a class without a curve."""
  from sklearn import metrics

  num_classes = probabilities.shape[1]
  auroc, auprc = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
  for label, positive in one_vs_rest_classes(y_true):
    auroc[label] = metrics.roc_auc_score(positive, probabilities[:, label])
    auprc[label] = metrics.average_precision_score(positive, probabilities[:, label])
  return auroc, auprc


def one_vs_rest_auc(y_true: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
  """Macro one-vs-rest (AUROC, AUPRC) over the classes present in `y_true`."""
  auroc, auprc = one_vs_rest_areas(y_true, probabilities)
  scored = ~np.isnan(auroc)
  if not scored.any():
    return float("nan"), float("nan")
  return float(np.mean(auroc[scored])), float(np.mean(auprc[scored]))


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  from sklearn import metrics

  # Predicting a class the test split lacks is a plain error, not a reason to warn.
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
    return float(metrics.balanced_accuracy_score(y_true, y_pred))


def classification_metrics(
  y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int, probabilities: np.ndarray | None = None
) -> dict:
  """Metrics of one model's predictions. Classes absent from `y_true` are left
  out of the per-class recall and of its minimum."""
  from sklearn import metrics

  labels = np.arange(num_classes)
  present = np.isin(labels, y_true)
  recall = metrics.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
  result = {
    "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
    "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
    "worst_class_recall": float(recall[present].min()),
    "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=labels[present], average="macro", zero_division=0)),
  }
  if probabilities is not None:
    result["auroc"], result["auprc"] = one_vs_rest_auc(y_true, probabilities)
  result["per_class_recall"] = [float(r) if p else None for r, p in zip(recall, present)]  # type: ignore[assignment]
  return result


def softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=-1, keepdims=True)
  weights = np.exp(shifted.astype(np.float64))
  return weights / weights.sum(axis=-1, keepdims=True)


def evaluate_logits(y_true: np.ndarray, logits: np.ndarray, *, num_classes: int, seeds) -> pd.DataFrame:
  """One row per seed: the metrics of `logits[s]` (an (S, N, C) array)."""
  rows = []
  for seed, seed_logits in zip(seeds, logits):
    rows.append(
      {
        "seed": int(seed),
        **classification_metrics(
          y_true, seed_logits.argmax(-1), num_classes=num_classes, probabilities=softmax(seed_logits)
        ),
      }
    )
  return pd.DataFrame(rows)


def evaluate_predictions(y_true: np.ndarray, predictions: np.ndarray, *, num_classes: int, seeds) -> pd.DataFrame:
  """One row per seed: the metrics of `predictions[s]` (an (S, N) array)."""
  rows = []
  for seed, y_pred in zip(seeds, predictions):
    rows.append({"seed": int(seed), **classification_metrics(y_true, y_pred, num_classes=num_classes)})
  return pd.DataFrame(rows)


SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "worst_class_recall", "macro_f1", "auroc", "auprc")


def summarize(per_seed: pd.DataFrame) -> dict:
  """Mean and standard deviation over seeds of each scalar metric."""
  summary = {}
  for metric in SUMMARY_METRICS:
    if metric not in per_seed:
      continue
    values = per_seed[metric].to_numpy(np.float64)
    summary[metric] = float(values.mean())
    summary[f"{metric}_std"] = float(values.std())
  recall = np.array(
    [[np.nan if r is None else r for r in row] for row in per_seed["per_class_recall"]], dtype=np.float64
  )
  summary["per_class_recall"] = [None if np.isnan(c).all() else float(np.nanmean(c)) for c in recall.T]  # type: ignore[assignment]
  return summary


def per_class_metrics(y_true: np.ndarray, logits: np.ndarray, *, num_classes: int, class_names=None) -> pd.DataFrame:
  """One row per class, means over the seeds of `logits` (S, N, C): test
  support and prevalence, precision, recall and F1 (scikit-learn's
  `precision_recall_fscore_support`), and one-vs-rest AUROC and AUPRC (NaN
  for a class absent from the test split)."""
  from sklearn import metrics

  labels = np.arange(num_classes)
  columns: dict[str, list[np.ndarray]] = {"precision": [], "recall": [], "f1": [], "auroc": [], "auprc": []}
  for seed_logits in logits:
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
      y_true, seed_logits.argmax(-1), labels=labels, zero_division=0
    )
    auroc, auprc = one_vs_rest_areas(y_true, softmax(seed_logits))
    for name, values in zip(columns, (precision, recall, f1, auroc, auprc)):
      columns[name].append(np.asarray(values, np.float64))
  support = np.bincount(y_true, minlength=num_classes)
  table = pd.DataFrame(
    {
      "class": list(class_names) if class_names else labels.tolist(),
      "support": support,
      "prevalence": support / max(len(y_true), 1),
      **{name: np.mean(values, axis=0) for name, values in columns.items()},
    }
  )
  present = support > 0
  table.loc[~present, ["precision", "recall", "f1"]] = np.nan
  return table


# Proxies are "near the majority-class rate" when their accuracy covers less
# than this share of the way from always predicting the largest class to perfect.
WEAK_PROXY_SHARE = 0.25


def proxy_accuracy(predictions: np.ndarray, y_true: np.ndarray, *, split: str) -> dict:
  """How good the proxies are on examples they did not train on: each seed's
  accuracy ((S, N) predictions), their mean, the majority-class rate of
  `y_true` (what always predicting the largest class scores) and whether
  the proxies are near it (`weak`): scores from such proxies rank noise."""
  y_true = np.asarray(y_true)
  per_seed = [float(v) for v in (np.asarray(predictions) == y_true[None]).mean(axis=1)]
  majority = float(np.bincount(y_true).max() / len(y_true)) if len(y_true) else 0.0
  mean = float(np.mean(per_seed))
  return {
    "split": split,
    "num_examples": int(len(y_true)),
    "accuracy": mean,
    "accuracy_per_seed": per_seed,
    "majority_rate": majority,
    "weak": bool(mean < majority + WEAK_PROXY_SHARE * (1.0 - majority)),
  }


def describe_proxy_accuracy(record: dict) -> str:
  """`proxies' accuracy on test: 0.912 (seeds 0.905-0.918; majority class 0.102)`."""
  seeds = record["accuracy_per_seed"]
  spread = f"seeds {min(seeds):.3f}-{max(seeds):.3f}; " if len(seeds) > 1 else ""
  return (
    f"proxies' accuracy on {record['split']}: {record['accuracy']:.3f} ({spread}majority class"
    f" {record['majority_rate']:.3f})"
  )


def warn_if_weak(record: dict | None, *, use: str) -> None:
  """One warning when the proxies are near the majority-class rate: what they give `use` is mostly noise."""
  if record and record.get("weak"):
    warnings.warn(
      f"{describe_proxy_accuracy(record)}: "
      + ("below" if record["accuracy"] < record["majority_rate"] else "barely above")
      + f" always predicting the largest class, so the {use}"
      " rank noise; train the proxies longer (--epochs), use a stronger model, or check the labels",
      UserWarning,
      stacklevel=3,
    )
