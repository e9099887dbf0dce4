"""Input standardisation with statistics of the training split."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """`(x - mean) / std`, per channel for images (N, H, W, C), else over all features.

  Per-channel rather than per-feature statistics, so that a pixel that is
  constant in the training split (digit borders) cannot blow up at test time.
  """

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, x: np.ndarray) -> Normalizer:
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(range(x.ndim - 1)) if x.ndim >= 4 else tuple(range(x.ndim))
    mean = x.mean(axis=axes)
    std = x.std(axis=axes)
    std = np.where(std > 1e-8, std, 1.0)
    return cls(mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32))

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

  def describe(self) -> dict:
    return {"mean": np.ravel(self.mean).tolist(), "std": np.ravel(self.std).tolist()}
