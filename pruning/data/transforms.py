"""Dataset transforms for pruning studies, applied to the training split only
(the test and validation splits stay as they are: balanced and clean) and
recorded in `Dataset.transforms`, hence in a manifest's provenance.

- `long_tail(dataset, ratio=r)`: the exponential profile of CIFAR-10-LT
  (Cui et al., 2019): class c keeps `floor(n_max * r ** (-c / (C - 1)))`
  examples (at least 1, at most its own), with n_max the largest class's size,
  chosen at random without replacement.
- `label_noise(dataset, rate=eta)`: symmetric noise. Exactly
  `round(eta * N)` examples, chosen at random, get a label drawn uniformly
  from the *other* classes, so `rate` is the realised noise rate and every
  changed label is wrong. The true labels stay in `Split.clean_y`
  (the manifest's `clean_label`, and `is_noisy`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError


def long_tail_counts(counts: np.ndarray, ratio: float) -> np.ndarray:
  """Examples class c keeps under the exponential profile with imbalance `ratio`."""
  classes = len(counts)
  profile = float(counts.max()) * float(ratio) ** (-np.arange(classes) / max(classes - 1, 1))
  return np.minimum(counts, np.maximum(1, np.floor(profile + 1e-9))).astype(np.int64) * (counts > 0)


def long_tail(dataset: Dataset, *, ratio: float, seed: int = 0) -> Dataset:
  """Subsamples the training split to an exponential class profile (see module doc)."""
  if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 1 or not np.isfinite(ratio):
    raise UserError(f"long_tail ratio {ratio!r} must be a number >= 1 (n_max / n_min, e.g. 100)")
  train = dataset.train
  counts = np.bincount(train.y, minlength=dataset.num_classes)
  keep_counts = long_tail_counts(counts, ratio)
  rng = np.random.default_rng(seed)
  chosen = [
    rng.choice(np.flatnonzero(train.y == c), size=int(keep_counts[c]), replace=False)
    for c in range(dataset.num_classes)
    if keep_counts[c]
  ]
  rows = np.sort(np.concatenate(chosen))
  return dataclasses.replace(
    dataset,
    train=train.take(rows),
    transforms=dataset.transforms
    + ({"transform": "long_tail", "ratio": float(ratio), "seed": seed, "kept_per_class": keep_counts.tolist()},),
  )


NOISE_KINDS = ("symmetric", "pairs")


def label_noise(dataset: Dataset, *, rate: float, seed: int = 0, kind: str = "symmetric") -> Dataset:
  """Flips `round(rate * N)` training labels: to a uniformly chosen other
  class (`symmetric`), or class-dependent, class c to c + 1 mod C (`pairs`,
  the pair flipping of Han et al., 2018)."""
  if kind not in NOISE_KINDS:
    raise UserError(f"label noise kind {kind!r} must be one of {', '.join(NOISE_KINDS)}")
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
    raise UserError(f"label_noise rate {rate!r} must lie in [0, 1), e.g. 0.1")
  train = dataset.train
  if train.clean_y is not None:
    raise UserError(f"{dataset.spec}: label noise was already added once: add it in one step")
  rng = np.random.default_rng(seed)
  flipped = rng.choice(len(train), size=int(np.floor(rate * len(train) + 0.5)), replace=False)
  # An offset of 1..C-1 classes, modulo C, is a uniform draw over the other classes.
  offsets = rng.integers(1, dataset.num_classes, size=len(flipped))
  if kind == "pairs":
    offsets = np.ones(len(flipped), np.int64)
  noisy_y = train.y.copy()
  noisy_y[flipped] = (train.y[flipped] + offsets) % dataset.num_classes
  noisy = dataclasses.replace(train, y=noisy_y, clean_y=train.y.copy())
  return dataclasses.replace(
    dataset,
    train=noisy,
    transforms=dataset.transforms
    + (
      {"transform": "label_noise", "rate": float(rate), "seed": seed, "num_noisy": int(len(flipped))}
      | ({"kind": kind} if kind != "symmetric" else {}),
    ),
  )
