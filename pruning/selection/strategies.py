"""Orders of preference: which examples a strategy keeps first.

- `hardest`: most difficult first (highest score, or lowest for scores where
  low means hard, such as confidence and margin).
- `easiest`: least difficult first.
- `random`: a uniform random order from the selection seed.
- `offset`: drop the hardest `beta` fraction first (likely mislabeled), then
  hardest first among the rest (Data Diet's offset windows); the dropped
  examples come last, so they are kept only if a class quota needs them.
- `ccs`: coverage-centric selection (see `pruning.selection.coverage`); a
  choice for one budget rather than an order, so `preference_order` refuses it.
- `probabilistic`: a random order in which an example comes early with
  probability rising with difficulty: sampling without replacement with
  weights `softmax(difficulty / temperature)` or, with `weighting="linear"`,
  proportional to `difficulty - min(difficulty)` (Anand et al., 2023). Taking
  the first k of the order (the Gumbel top-k trick) is exactly such a sample,
  within each class as well as overall.

Ties are broken by row position (the manifest is in `index` order), so orders are
deterministic (see `pruning.selection.order`).
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError, unknown_name_error
from pruning.scores.registry import HARDER_HIGHER
from pruning.selection.coverage import check_beta
from pruning.selection.order import order_by

STRATEGIES = ("hardest", "easiest", "random", "offset", "ccs", "probabilistic")
ORDERED_STRATEGIES = ("hardest", "easiest", "random", "offset", "probabilistic")
WEIGHTINGS = ("softmax", "linear")


def preference_order(strategy: str, *, n: int, difficulty: np.ndarray | None, seed: int,
                     beta: float = 0.1, temperature: float = 1.0, weighting: str = "softmax") -> np.ndarray:
  """Row positions, most preferred first."""
  if strategy == "random":
    return np.random.default_rng(seed).permutation(n)
  if strategy not in ORDERED_STRATEGIES:
    raise unknown_name_error("ordered strategy", strategy, ORDERED_STRATEGIES)
  if difficulty is None:
    raise UserError(f"strategy {strategy!r} needs a score: pass --score NAME")
  if strategy == "probabilistic":
    if not (np.isfinite(temperature) and temperature > 0):
      raise UserError(f"temperature {temperature!r} must be a positive number, e.g. 1.0")
    if weighting not in WEIGHTINGS:
      raise unknown_name_error("weighting", weighting, WEIGHTINGS)
    if weighting == "softmax":
      log_weight = difficulty / temperature
    else:
      with np.errstate(divide="ignore"):
        log_weight = np.log(difficulty - difficulty.min())
    # Gumbel top-k in its exponential form: the first k of E_i / w_i, with
    # E_i ~ Exp(1), are a weighted sample without replacement (Efraimidis-Spirakis).
    with np.errstate(divide="ignore"):
      keys = np.log(np.random.default_rng(seed).standard_exponential(n)) - log_weight
    return order_by(keys)
  if strategy == "easiest":
    return order_by(difficulty)
  hardest_first = order_by(-difficulty)
  if strategy == "offset":
    check_beta(beta, strategy="offset")
    dropped = int(np.floor(beta * n + 0.5))
    return np.concatenate([hardest_first[dropped:], hardest_first[:dropped]])
  return hardest_first


def difficulty(values: np.ndarray, harder: str) -> np.ndarray:
  """Scores turned so that larger always means harder."""
  values = np.asarray(values, np.float64)
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.isfinite(values)))
    raise UserError(f"{bad} scores are NaN or infinite: rescore, or drop those examples first")
  return values if harder == HARDER_HIGHER else -values
