"""Confident learning: how many labels of each class are wrong (Northcutt, Jiang and Chuang, JAIR 2021).

From out-of-sample predicted probabilities P (N, C) and the given labels s:

- per-class thresholds `t_j = mean(P[i, j] for i with s_i = j)`, the
  average self-confidence of class j;
- the confident joint `C[i, j]`: examples given label i whose probability
  of class j is at least `t_j`, counted under the most probable such j
  (examples above no threshold are not counted);
- calibrated, `C~[i, j] = C[i, j] / sum_j C[i, j] * n_i` (each row sums to
  the number of examples given label i), so `n_i - C~[i, i]` is the
  estimated number of wrong labels in class i, and `C~ / N` estimates the
  joint of given and true labels.

`prune_by_noise_rate` is the paper's (and cleanlab's default) rule for which
examples to flag: for every off-diagonal cell (i, j), the `round(C~[i, j])`
examples given label i with the largest margin `P[x, j] - P[x, i]`.
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError

MIN_PER_CLASS = 5  # fewer examples than this give no usable per-class threshold


def check_inputs(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  labels = np.asarray(labels, np.int64)
  probabilities = np.asarray(probabilities, np.float64)
  if probabilities.ndim != 2 or len(probabilities) != len(labels):
    raise UserError(f"probabilities of shape {probabilities.shape} for {len(labels)} labels: give (N, C)")
  counts = np.bincount(labels, minlength=probabilities.shape[1])
  thin = np.flatnonzero((counts > 0) & (counts < MIN_PER_CLASS))
  if len(thin):
    raise UserError(
      f"class {int(thin[0])} has {int(counts[thin[0]])} examples, too few to estimate its noise"
      f" (at least {MIN_PER_CLASS}): merge or drop the class, or flag with method aum_threshold"
    )
  return labels, probabilities


def thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """t_j: the mean probability of class j over the examples labelled j (NaN for an absent class)."""
  num_classes = probabilities.shape[1]
  out = np.full(num_classes, np.nan)
  for j in range(num_classes):
    rows = labels == j
    if rows.any():
      out[j] = probabilities[rows, j].mean()
  return out


def confident_joint(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """C[i, j] (not calibrated): given label i, confidently class j."""
  labels, probabilities = check_inputs(labels, probabilities)
  num_classes = probabilities.shape[1]
  t = thresholds(labels, probabilities)
  above = probabilities >= np.where(np.isnan(t), np.inf, t)[None, :]
  masked = np.where(above, probabilities, -np.inf)
  confident = masked.argmax(axis=1)
  counted = above.any(axis=1)
  joint = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(joint, (labels[counted], confident[counted]), 1)
  return joint


def calibrated_joint(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """C~: each row of the confident joint rescaled to the number of examples given that label."""
  joint = confident_joint(labels, probabilities).astype(np.float64)
  counts = np.bincount(np.asarray(labels, np.int64), minlength=joint.shape[0]).astype(np.float64)
  rows = joint.sum(axis=1, keepdims=True)
  return np.where(rows > 0, joint / np.where(rows > 0, rows, 1.0), 0.0) * counts[:, None]


def estimated_issues(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """Per given class, the estimated number of wrong labels (`n_i - C~[i, i]`)."""
  calibrated = calibrated_joint(labels, probabilities)
  return calibrated.sum(axis=1) - np.diag(calibrated)


def prune_by_noise_rate(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """Which examples confident learning flags: (N,) booleans (see the module doc)."""
  labels, probabilities = check_inputs(labels, probabilities)
  calibrated = calibrated_joint(labels, probabilities)
  flagged = np.zeros(len(labels), bool)
  num_classes = probabilities.shape[1]
  for i in range(num_classes):
    given = np.flatnonzero(labels == i)
    for j in range(num_classes):
      count = int(round(calibrated[i, j]))
      if i == j or count == 0 or not len(given):
        continue
      margin = probabilities[given, j] - probabilities[given, i]
      order = given[np.argsort(-margin, kind="stable")]
      flagged[order[:count]] = True
  return flagged
