"""Coverage-centric coreset selection (CCS; Zheng et al., ICLR 2023).

1. Drop the hardest `beta` fraction (likely mislabeled or ambiguous).
2. Split the remaining difficulty range into `num_strata` equal-width strata.
3. Share the budget k between strata as the paper's Algorithm 1 does: take
   the non-empty strata from the smallest up (ties: lower difficulty first);
   each gets min(its size, floor(budget left / strata left)). What a small
   stratum cannot use passes on to the larger ones, and when the budget is
   smaller than the number of strata the units go to the most populated
   strata, not to the easiest.
4. Sample uniformly at random within each stratum (from the selection seed).

If k exceeds what is left after step 1, all of it is kept and the dropped
examples fill the rest, least hard first. Unlike the ordered strategies the
chosen set is not nested in k: it is a set chosen for one budget.
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError
from pruning.selection.order import smallest

DEFAULT_STRATA = 50


def check_beta(beta: float, *, strategy: str) -> None:
  if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
    raise UserError(f"beta {beta!r} must lie in [0, 1): the fraction of hardest examples {strategy} drops")


def ccs_quotas(counts: np.ndarray, k: int) -> np.ndarray:
  """Examples kept per stratum: Zheng et al.'s Algorithm 1 (see the module doc)."""
  counts = np.asarray(counts, np.int64)
  quotas = np.zeros_like(counts)
  order = [int(s) for s in np.argsort(counts, kind="stable") if counts[s] > 0]
  budget = int(k)
  for position, stratum in enumerate(order):
    quotas[stratum] = min(int(counts[stratum]), budget // (len(order) - position))
    budget -= int(quotas[stratum])
  return quotas


def coverage_choice(
  difficulty: np.ndarray, k: int, *, beta: float, num_strata: int = DEFAULT_STRATA, rng: np.random.Generator
) -> np.ndarray:
  """Positions of the k examples CCS keeps out of `difficulty` (larger = harder)."""
  n = len(difficulty)
  if k <= 0:
    return np.zeros(0, np.int64)
  dropped = int(np.floor(beta * n + 0.5))
  if k >= n - dropped:
    return smallest(difficulty, k)  # all that is left, then the least hard of the dropped
  pool = np.ones(n, bool)
  pool[smallest(-difficulty, dropped)] = False
  pool = np.flatnonzero(pool)
  values = difficulty[pool]
  low, high = float(values.min()), float(values.max())
  if high > low:
    stratum = np.minimum(((values - low) / (high - low) * num_strata).astype(np.int64), num_strata - 1)
  else:
    stratum = np.zeros(len(pool), np.int64)
  # Only non-empty strata take part, so number them densely in order: memory
  # grows with the pool, not with `num_strata` (the result is the same).
  stratum = np.unique(stratum, return_inverse=True)[1].reshape(-1)
  counts = np.bincount(stratum)
  quotas = ccs_quotas(counts, k)
  # Group the pool by stratum (a stable radix sort), then sample each stratum's quota.
  small = np.uint8 if len(counts) <= 255 else np.uint16 if len(counts) <= 65535 else np.int64
  by_stratum = np.argsort(stratum.astype(small), kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)])
  chosen = [
    by_stratum[starts[s] + rng.choice(counts[s], size=quotas[s], replace=False, shuffle=False)]
    for s in np.flatnonzero(quotas)
  ]
  return np.sort(pool[np.concatenate(chosen)])
