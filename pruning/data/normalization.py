"""Input standardisation with statistics of the training split."""

from __future__ import annotations

import dataclasses

import numpy as np

from pruning.data.streaming import iter_chunks


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """`(x - mean) / std`, per channel for images (N, H, W, C), else over all features.

  Per-channel rather than per-feature statistics, so that a pixel that is
  constant in the training split (digit borders) cannot blow up at test time.
  """

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, x: np.ndarray, *, rows: np.ndarray | None = None) -> Normalizer:
    """Statistics of `x` (or of `x[rows]`), accumulated a chunk at a time in
    float64 (two passes: the mean, then squared deviations from it), so
    features mapped from disk are never read whole."""
    per_channel = x.ndim >= 4
    count = len(x) if rows is None else len(rows)
    rows = None if rows is None else np.sort(rows)

    def chunks():
      for part in iter_chunks(x, rows):
        part = part.astype(np.float64)
        yield part.reshape(-1, part.shape[-1]) if per_channel else part.reshape(-1)

    size = count * (int(np.prod(x.shape[1:-1])) if per_channel else int(np.prod(x.shape[1:])))
    mean = sum((c.sum(axis=0) for c in chunks()), np.float64(0)) / max(size, 1)
    squares = sum((((c - mean) ** 2).sum(axis=0) for c in chunks()), np.float64(0))
    std = np.sqrt(squares / max(size, 1))
    std = np.where(std > 1e-8, std, 1.0)
    return cls(mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32))

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

  def describe(self) -> dict:
    return {"mean": np.ravel(self.mean).tolist(), "std": np.ravel(self.std).tolist()}
