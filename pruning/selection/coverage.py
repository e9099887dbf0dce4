"""Coverage-centric coreset selection (CCS; Zheng et al., ICLR 2023).

1. Drop the hardest `beta` fraction (likely mislabeled or ambiguous).
2. Split the remaining difficulty range into `num_strata` equal-width strata.
3. Share the budget k between strata equally, smallest stratum first, passing
   what a stratum cannot use on to the others (water-filling; whole leftover
   units go to the lower strata).
4. Sample uniformly at random within each stratum.

If k exceeds what is left after step 1, all of it is kept and the dropped
examples fill the rest, least hard first. Unlike the ordered strategies the
chosen set is not nested in k: it is a set chosen for one budget.
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError
from pruning.selection.class_quotas import water_fill
from pruning.selection.order import order_by

DEFAULT_STRATA = 50


def check_beta(beta: float, *, strategy: str) -> None:
  if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
    raise UserError(f"beta {beta!r} must lie in [0, 1): the fraction of hardest examples {strategy} drops")


def coverage_choice(difficulty: np.ndarray, k: int, *, beta: float, num_strata: int = DEFAULT_STRATA,
                    rng: np.random.Generator) -> np.ndarray:
  """Positions of the k examples CCS keeps out of `difficulty` (larger = harder)."""
  check_beta(beta, strategy="ccs")
  if isinstance(num_strata, bool) or not isinstance(num_strata, (int, np.integer)) or num_strata < 1:
    raise UserError(f"num_strata {num_strata!r} must be a whole number >= 1 (the paper uses 50)")
  n = len(difficulty)
  if k <= 0:
    return np.zeros(0, np.int64)
  hardest_first = order_by(-difficulty)
  dropped = int(np.floor(beta * n + 0.5))
  pool = hardest_first[dropped:]
  if k >= len(pool):
    refill = hardest_first[:dropped][::-1][: k - len(pool)]
    return np.concatenate([pool, refill])
  values = difficulty[pool]
  low, high = float(values.min()), float(values.max())
  if high > low:
    stratum = np.minimum(((values - low) / (high - low) * num_strata).astype(np.int64), num_strata - 1)
  else:
    stratum = np.zeros(len(pool), np.int64)
  counts = np.bincount(stratum, minlength=num_strata)
  quotas = water_fill(counts, k, (counts > 0).astype(np.float64))
  # A random order within each stratum (a random permutation, then a stable
  # radix sort by stratum); keep each stratum's first quota.
  shuffled = rng.permutation(len(pool))
  small = np.uint8 if num_strata <= 255 else np.uint16 if num_strata <= 65535 else np.int64
  by_stratum = shuffled[np.argsort(stratum[shuffled].astype(small), kind="stable")]
  sorted_strata = stratum[by_stratum]
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.arange(len(pool)) - starts[sorted_strata]
  return pool[by_stratum[rank < quotas[sorted_strata]]]
