"""Deterministic choices of the k smallest keys, ties broken by row position.

A kept set needs no order inside it, so these run in linear time
(`numpy.argpartition`) instead of sorting every row.
"""

from __future__ import annotations

import numpy as np


def smallest(keys: np.ndarray, k: int) -> np.ndarray:
  """Positions of the k smallest `keys` (ties: lower position first), ascending by position."""
  n = len(keys)
  if k >= n:
    return np.arange(n)
  if k <= 0:
    return np.zeros(0, np.int64)
  threshold = keys[np.argpartition(keys, k - 1)[:k]].max()
  below = keys < threshold
  equal = np.flatnonzero(keys == threshold)[: k - int(below.sum())]
  below[equal] = True
  return np.flatnonzero(below)
