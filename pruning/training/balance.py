"""How training treats classes: batch sampling, loss weights and a logit offset in the loss.

`ClassBalance` is what the imbalance remedies (`pruning.retraining.remedies`)
hand the training loop:

- `sampling="shuffle"` (the default): every example once per epoch, in a
  seeded random order;
- `sampling="weighted"`: each epoch draws as many examples as the split
  holds, with replacement, example i with probability proportional to
  `sampling_weights[y_i]` (class-balanced oversampling with weights
  1 / n_c; Buda et al., 2018);
- `sampling="undersample"`: each epoch takes `min_c n_c` examples of every
  class, without replacement, so an epoch is shorter and more of them fit
  the same step budget;
- `class_weights`: the loss of an example of class c is weighted by
  `class_weights[c]` (the step's loss is the weighted mean);
- `logit_offset`: added to the logits inside the loss only (Menon et al.,
  2021: `tau * log prior`); predictions are untouched.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from pruning.errors import UserError

SAMPLINGS = ("shuffle", "weighted", "undersample")


@dataclasses.dataclass(frozen=True)
class ClassBalance:
  sampling: str = "shuffle"
  sampling_weights: tuple[float, ...] | None = None  # per class, for "weighted"
  class_weights: tuple[float, ...] | None = None  # per class loss weights
  logit_offset: tuple[float, ...] | None = None  # per class, added to the logits in the loss

  def __post_init__(self):
    if self.sampling not in SAMPLINGS:
      raise UserError(f"sampling {self.sampling!r} must be one of {', '.join(SAMPLINGS)}")
    if self.sampling == "weighted" and self.sampling_weights is None:
      raise UserError("weighted sampling needs sampling_weights, one per class")
    for name in ("sampling_weights", "class_weights", "logit_offset"):
      values = getattr(self, name)
      if values is not None and not all(math.isfinite(v) for v in values):
        raise UserError(f"{name} must be finite numbers, got {values}")
    for name in ("sampling_weights", "class_weights"):
      values = getattr(self, name)
      if values is not None and min(values) < 0:
        raise UserError(f"{name} must not be negative, got {values}")

  def epoch_size(self, labels: np.ndarray) -> int:
    """Examples one epoch visits (with repeats, for weighted sampling)."""
    if self.sampling == "undersample":
      counts = np.bincount(labels)
      present = counts[counts > 0]
      return int(present.min()) * len(present)
    return len(labels)

  def epoch_positions(self, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """One epoch's positions into `labels` (the training rows), in visiting order."""
    n = len(labels)
    if self.sampling == "shuffle":
      return rng.permutation(n)
    if self.sampling == "weighted":
      assert self.sampling_weights is not None
      p = np.asarray(self.sampling_weights, np.float64)[labels]
      if not p.sum() > 0:
        raise UserError("every training example has sampling weight 0: keep a class with a positive weight")
      return rng.choice(n, size=n, replace=True, p=p / p.sum())
    size = self.epoch_size(labels) // len(np.unique(labels))
    chosen = [rng.choice(np.flatnonzero(labels == c), size=size, replace=False) for c in np.unique(labels)]
    return rng.permutation(np.concatenate(chosen))

  def record(self) -> dict:
    """What the results' provenance records."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}
