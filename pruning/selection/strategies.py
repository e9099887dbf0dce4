"""Strategies: which k examples of a group (a class, or all rows) to keep.

- `hardest`: the k most difficult (highest score, or lowest for scores where
  low means hard, such as confidence and margin).
- `easiest`: the k least difficult.
- `random`: a uniform sample from the selection seed.
- `offset`: drop the hardest `beta` fraction (likely mislabeled), then keep the
  hardest of the rest (Data Diet's offset windows). If k is more than what is
  left, the dropped examples fill the rest, least hard first.
- `ccs`: coverage-centric selection (see `pruning.selection.coverage`).
- `probabilistic`: a sample without replacement with weights
  `softmax(difficulty / temperature)` or, with `weighting="linear"`,
  proportional to `difficulty - min(difficulty)` (Anand et al., 2023), drawn
  with exponential keys (Efraimidis and Spirakis, 2006: the k smallest
  `E_i / w_i` with `E_i ~ Exp(1)` are such a sample).

Ties in difficulty are broken by row position (the manifest is in `index`
order), and every random draw comes from the selection seed, so choices are
deterministic.
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError, unknown_name_error
from pruning.scores.registry import HARDER_HIGHER
from pruning.selection.coverage import DEFAULT_STRATA, check_beta, coverage_choice
from pruning.selection.order import smallest

STRATEGIES = ("hardest", "easiest", "random", "offset", "ccs", "probabilistic")
DESCRIPTIONS = {
  "hardest": "the k most difficult",
  "easiest": "the k least difficult",
  "random": "a uniform sample (the baseline)",
  "offset": "drop the hardest --beta, then the hardest of the rest (Data Diet)",
  "ccs": "drop the hardest --beta, then an even share of each difficulty stratum (Zheng et al.)",
  "probabilistic": "sample by difficulty: softmax(d / T) or linear weights (Anand et al.)",
}
WEIGHTINGS = ("softmax", "linear")


def check_options(strategy: str, *, beta: float, temperature: float, weighting: str, num_strata: int) -> None:
  """Refuses out-of-range options before any work is done."""
  if strategy not in STRATEGIES:
    raise unknown_name_error("strategy", strategy, STRATEGIES)
  if strategy in ("offset", "ccs"):
    check_beta(beta, strategy=strategy)
  if strategy == "ccs" and (
    isinstance(num_strata, bool) or not isinstance(num_strata, (int, np.integer)) or not 1 <= num_strata <= 2**40
  ):
    raise UserError(f"num_strata {num_strata!r} must be a whole number in 1..2^40 (the paper uses 50)")
  if strategy == "probabilistic":
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
      raise UserError(f"temperature {temperature!r} must be a positive number, e.g. 1.0")
    if weighting not in WEIGHTINGS:
      raise unknown_name_error("weighting", weighting, WEIGHTINGS)


def choose(
  strategy: str,
  difficulty: np.ndarray | None,
  k: int,
  *,
  n: int,
  rng: np.random.Generator,
  beta: float = 0.1,
  temperature: float = 1.0,
  weighting: str = "softmax",
  num_strata: int = DEFAULT_STRATA,
) -> np.ndarray:
  """Positions (0..n-1) of the k examples `strategy` keeps out of a group of n."""
  if strategy == "random":
    return np.sort(rng.choice(n, size=k, replace=False, shuffle=False))
  if difficulty is None:
    raise UserError(f"strategy {strategy!r} needs a score: pass --score NAME")
  if strategy == "hardest":
    return smallest(-difficulty, k)
  if strategy == "easiest":
    return smallest(difficulty, k)
  if strategy == "offset":
    dropped = int(np.floor(beta * n + 0.5))
    if k > n - dropped:
      return smallest(difficulty, k)
    window = np.zeros(n, bool)
    window[smallest(-difficulty, dropped + k)] = True
    window[smallest(-difficulty, dropped)] = False
    return np.flatnonzero(window)
  if strategy == "ccs":
    return coverage_choice(difficulty, k, beta=beta, num_strata=num_strata, rng=rng)
  if strategy == "probabilistic":
    if weighting == "softmax":
      log_weight = difficulty / temperature
    else:
      with np.errstate(divide="ignore"):
        log_weight = np.log(difficulty - difficulty.min())
    with np.errstate(divide="ignore"):
      keys = np.log(rng.standard_exponential(n)) - log_weight
    return smallest(keys, k)
  raise unknown_name_error("strategy", strategy, STRATEGIES)


def difficulty(values: np.ndarray, harder: str) -> np.ndarray:
  """Scores turned so that larger always means harder."""
  values = np.asarray(values, np.float64)
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.isfinite(values)))
    raise UserError(f"{bad} scores are NaN or infinite: rescore, or drop those examples first")
  return values if harder == HARDER_HIGHER else -values
