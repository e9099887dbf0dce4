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

Each is a `Strategy` registered by name in `STRATEGIES`: a function
`choose(difficulty, k, *, n, rng, **options)` returning the positions (0..n-1)
of the k examples kept out of a group of n, the options it reads (recorded in
the subset's provenance) and a check of their values.

Ties in difficulty are broken by row position (the manifest is in `index`
order), and every random draw comes from the selection seed, so choices are
deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pruning.errors import UserError, unknown_name_error
from pruning.manifest import HARDER_HIGHER
from pruning.registry import Registry
from pruning.selection.coverage import DEFAULT_STRATA, check_beta, coverage_choice
from pruning.selection.order import smallest

WEIGHTINGS = ("softmax", "linear")
# Every strategy option, with its default: what `select` passes and the CLI offers.
OPTION_DEFAULTS = {"beta": 0.1, "temperature": 1.0, "weighting": "softmax", "num_strata": DEFAULT_STRATA}


@dataclasses.dataclass(frozen=True)
class Strategy:
  """How a strategy chooses, which options it reads, and how it checks them."""

  choose: Callable[..., np.ndarray]
  needs_score: bool = True
  options: tuple[str, ...] = ()
  check: Callable[..., None] | None = None


STRATEGIES: Registry[Strategy] = Registry("strategy")


def register_strategy(
  name: str,
  *,
  description: str,
  needs_score: bool = True,
  options: tuple[str, ...] = (),
  check: Callable[..., None] | None = None,
):
  """Decorator: registers `choose(difficulty, k, *, n, rng, **options) -> positions` as strategy `name`."""

  def decorate(choose: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    unknown = set(options) - set(OPTION_DEFAULTS)
    if unknown:
      raise ValueError(f"strategy {name!r}: unknown options {sorted(unknown)} (known: {sorted(OPTION_DEFAULTS)})")
    STRATEGIES.register(name, Strategy(choose, needs_score, tuple(options), check), description=description)
    return choose

  return decorate


def _check_strata(*, num_strata, **_) -> None:
  if isinstance(num_strata, bool) or not isinstance(num_strata, (int, np.integer)) or not 1 <= num_strata <= 2**40:
    raise UserError(f"num_strata {num_strata!r} must be a whole number in 1..2^40 (the paper uses 50)")


def _check_offset(*, beta, **_) -> None:
  check_beta(beta, strategy="offset")


def _check_ccs(*, beta, num_strata, **_) -> None:
  check_beta(beta, strategy="ccs")
  _check_strata(num_strata=num_strata)


def _check_probabilistic(*, temperature, weighting, **_) -> None:
  if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
    raise UserError(f"temperature {temperature!r} must be a positive number, e.g. 1.0")
  if weighting not in WEIGHTINGS:
    raise unknown_name_error("weighting", weighting, WEIGHTINGS)


@register_strategy("hardest", description="the k most difficult")
def hardest(difficulty, k, *, n, rng, **_):
  return smallest(-difficulty, k)


@register_strategy("easiest", description="the k least difficult")
def easiest(difficulty, k, *, n, rng, **_):
  return smallest(difficulty, k)


@register_strategy("random", description="a uniform sample (the baseline)", needs_score=False)
def random_sample(difficulty, k, *, n, rng, **_):
  return np.sort(rng.choice(n, size=k, replace=False, shuffle=False))


@register_strategy(
  "offset",
  description="drop the hardest --beta, then the hardest of the rest (Data Diet)",
  options=("beta",),
  check=_check_offset,
)
def offset(difficulty, k, *, n, rng, beta, **_):
  dropped = int(np.floor(beta * n + 0.5))
  if k > n - dropped:
    return smallest(difficulty, k)
  window = np.zeros(n, bool)
  window[smallest(-difficulty, dropped + k)] = True
  window[smallest(-difficulty, dropped)] = False
  return np.flatnonzero(window)


@register_strategy(
  "ccs",
  description="drop the hardest --beta, then an even share of each difficulty stratum (Zheng et al.)",
  options=("beta", "num_strata"),
  check=_check_ccs,
)
def ccs(difficulty, k, *, n, rng, beta, num_strata, **_):
  return coverage_choice(difficulty, k, beta=beta, num_strata=num_strata, rng=rng)


@register_strategy(
  "probabilistic",
  description="sample by difficulty: softmax(d / T) or linear weights (Anand et al.)",
  options=("temperature", "weighting"),
  check=_check_probabilistic,
)
def probabilistic(difficulty, k, *, n, rng, temperature, weighting, **_):
  if weighting == "softmax":
    log_weight = difficulty / temperature
  else:
    with np.errstate(divide="ignore"):
      log_weight = np.log(difficulty - difficulty.min())
  with np.errstate(divide="ignore"):
    keys = np.log(rng.standard_exponential(n)) - log_weight
  return smallest(keys, k)


def check_options(strategy: str, **options) -> None:
  """Refuses an unknown strategy or out-of-range options before any work is done."""
  chosen = STRATEGIES.get(strategy)
  if chosen.check is not None:
    chosen.check(**{**OPTION_DEFAULTS, **options})


def choose(strategy: str, difficulty: np.ndarray | None, k: int, *, n: int, rng: np.random.Generator, **options):
  """Positions (0..n-1) of the k examples `strategy` keeps out of a group of n."""
  chosen = STRATEGIES.get(strategy)
  if chosen.needs_score and difficulty is None:
    raise UserError(f"strategy {strategy!r} needs a score: pass --score NAME")
  return chosen.choose(difficulty, k, n=n, rng=rng, **{**OPTION_DEFAULTS, **options})


def difficulty(values: np.ndarray, harder: str) -> np.ndarray:
  """Scores turned so that larger always means harder."""
  values = np.asarray(values, np.float64)
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.isfinite(values)))
    raise UserError(f"{bad} scores are NaN or infinite: rescore, or drop those examples first")
  return values if harder == HARDER_HIGHER else -values
