"""`ScoringContext`: what every score may read, with logits cached per checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np

from pruning.training import TrainedModels


@dataclasses.dataclass
class ScoringContext:
  """Trained proxies and the examples to score (raw inputs `x`, labels `y`)."""

  models: TrainedModels
  x: np.ndarray
  y: np.ndarray
  progress: bool = True
  _logits: dict = dataclasses.field(default_factory=dict, repr=False)

  def logits(self, epoch: int | None) -> np.ndarray:
    """(S, N, C) logits at `epoch` (None: end of training), computed once."""
    if epoch not in self._logits:
      self._logits[epoch] = self.models.logits(self.x, epoch=epoch, progress=self.progress)
    return self._logits[epoch]
