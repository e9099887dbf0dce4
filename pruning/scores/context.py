"""`ScoringContext`: what every score may read, with logits cached per checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np

from pruning.training import TrainedModels


@dataclasses.dataclass
class ScoringContext:
  """Trained proxies and the examples to score (raw inputs `x`, labels `y`).

  When only a shard of the training split is scored, `rows` are its rows in
  the split and `all_y` the labels of the whole split: what the proxies
  recorded during training covers every row, and `recorded` picks the shard's.
  """

  models: TrainedModels
  x: np.ndarray
  y: np.ndarray
  progress: bool = True
  rows: np.ndarray | None = None
  all_y: np.ndarray | None = None
  _logits: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def split_labels(self) -> np.ndarray:
    """Labels of the whole training split (the scored rows' when not sharded)."""
    return self.y if self.all_y is None else self.all_y

  def recorded(self, values: np.ndarray) -> np.ndarray:
    """The scored rows of an (S, N_split) array recorded over the whole split."""
    return values if self.rows is None else values[:, self.rows]

  def logits(self, epoch: int | None) -> np.ndarray:
    """(S, N, C) logits at `epoch` (None: end of training), computed once."""
    if epoch not in self._logits:
      self._logits[epoch] = self.models.logits(
        self.x, epoch=epoch, rows_hint=len(self.split_labels), progress=self.progress
      )
    return self._logits[epoch]
