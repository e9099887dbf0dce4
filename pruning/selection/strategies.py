"""Orders of preference: which examples a strategy keeps first.

- `hardest`: most difficult first (highest score, or lowest for scores where
  low means hard, such as confidence and margin).
- `easiest`: least difficult first.
- `random`: a uniform random order from the selection seed.

Ties are broken by the example's `index`, so orders are deterministic.
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError, unknown_name_error
from pruning.scores.registry import HARDER_HIGHER

STRATEGIES = ("hardest", "easiest", "random")


def preference_order(strategy: str, *, n: int, difficulty: np.ndarray | None, seed: int) -> np.ndarray:
  """Row positions, most preferred first."""
  if strategy == "random":
    return np.random.default_rng(seed).permutation(n)
  if strategy not in STRATEGIES:
    raise unknown_name_error("strategy", strategy, STRATEGIES)
  if difficulty is None:
    raise UserError(f"strategy {strategy!r} needs a score: pass --score NAME")
  positions = np.arange(n)
  key = -difficulty if strategy == "hardest" else difficulty
  return np.lexsort((positions, key))


def difficulty(values: np.ndarray, harder: str) -> np.ndarray:
  """Scores turned so that larger always means harder."""
  values = np.asarray(values, np.float64)
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.isfinite(values)))
    raise UserError(f"{bad} scores are NaN or infinite: rescore, or drop those examples first")
  return values if harder == HARDER_HIGHER else -values
