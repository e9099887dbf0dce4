"""Input standardisation with statistics of the training split.

`(x - mean) / std`, with statistics chosen by `mode`:

- `per_feature`: one mean and std per feature (column of a table, or each
  position of an example). The default for tabular data (N, D), where
  columns have their own units: an income in 1e4..2e5 next to an age in
  20..70.
- `per_channel`: one per channel, the last axis, pooled over positions. The
  default for images (N, H, W, C) and multichannel signals (N, L, C): a pixel
  that is constant in the training split (a digit's border) cannot blow up at
  test time.
- `global`: one scalar over all features.
- `none`: the inputs as they are, for inputs that are not measurements
  (integer codes, token ids, already-standardised embeddings).

`auto` picks `per_feature` for (N, D) inputs and `per_channel` otherwise. A
feature (or channel) that is constant in the training split keeps std 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pruning.data.streaming import iter_chunks
from pruning.errors import unknown_name_error

MODES = ("auto", "per_feature", "per_channel", "global", "none")


def resolve_mode(mode: str, x) -> str:
  """The statistics `mode` means for inputs shaped like `x`."""
  if mode not in MODES:
    raise unknown_name_error("normalization", str(mode), MODES)
  if mode == "auto":
    return "per_feature" if x.ndim == 2 else "per_channel"
  if mode == "per_channel" and x.ndim < 3:
    return "per_feature"  # a table's channel is its column
  return mode


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """`(x - mean) / std` with statistics of the training split (see the module doc)."""

  mean: np.ndarray
  std: np.ndarray
  mode: str = "global"

  @classmethod
  def fit(cls, x: np.ndarray, *, rows: np.ndarray | None = None, mode: str = "auto") -> Normalizer:
    """Statistics of `x` (or of `x[rows]`), accumulated a chunk at a time in
    float64 (two passes: the mean, then squared deviations from it), so
    features mapped from disk are never read whole."""
    mode = resolve_mode(mode, x)
    if mode == "none":
      return cls(mean=np.zeros((), np.float32), std=np.ones((), np.float32), mode=mode)
    count = len(x) if rows is None else len(rows)
    rows = None if rows is None else np.sort(rows)
    stat_shape = {"per_feature": x.shape[1:], "per_channel": x.shape[-1:], "global": ()}[mode]

    def chunks():
      for part in iter_chunks(x, rows):
        part = part.astype(np.float64)
        yield part.reshape((-1, *stat_shape))

    per_stat = count * int(np.prod(x.shape[1:])) // max(int(np.prod(stat_shape)), 1)
    mean = sum((c.sum(axis=0) for c in chunks()), np.zeros(stat_shape)) / max(per_stat, 1)
    squares = sum((((c - mean) ** 2).sum(axis=0) for c in chunks()), np.zeros(stat_shape))
    std = np.sqrt(squares / max(per_stat, 1))
    std = np.where(std > 1e-8, std, 1.0)
    return cls(mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32), mode=mode)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    if self.mode == "none":
      return np.asarray(x, np.float32)
    return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

  def describe(self) -> dict:
    return {
      "mode": self.mode,
      "shape": list(np.shape(self.mean)),
      "mean": np.ravel(self.mean).tolist(),
      "std": np.ravel(self.std).tolist(),
    }

  @classmethod
  def from_description(cls, record: dict) -> Normalizer:
    """The normaliser a manifest's provenance describes (`describe`)."""
    shape = tuple(record.get("shape", [len(record["mean"])] if len(record["mean"]) != 1 else []))
    return cls(
      mean=np.asarray(record["mean"], np.float32).reshape(shape),
      std=np.asarray(record["std"], np.float32).reshape(shape),
      mode=record.get("mode", "global"),
    )
