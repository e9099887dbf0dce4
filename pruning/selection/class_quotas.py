"""How a budget of k examples is shared between classes.

Every rule but `global` is one weighted water-filling: class c gets
`q_c = min(n_c, t * w_c)` with t chosen so that the quotas sum to k, so what a
small class cannot use passes on to the others in proportion to their weights.
Quotas are made whole by largest remainder (ties to the lower label), so they
sum to exactly k and never exceed a class's size n_c.

- `global`: no quotas; the strategy's top k over all classes.
- `proportional`: w_c = n_c, so every class keeps the same fraction k / N.
- `balanced`: w_c = 1 for every class present: equal counts, capped at class
  size (DeepCore's class-balanced selection).
- `drop`: w_c = the validation error of class c for the proxies trained on
  all the data (Vysogorets et al., "DRoP: Distributionally Robust Data
  Pruning", ICLR 2025): classes the model gets wrong keep more. The error is
  estimated, not taken as a fact: with `wrong_c` of `n_c` validation examples
  misclassified, w_c = (wrong_c + 1) / (n_c + 2), the posterior mean under a
  uniform prior (Laplace's rule of succession). A class with 16 validation
  examples and none wrong gets 1/18, not 0, so it is never dropped whole.
- `drop_raw`: the paper's rule as written, w_c = wrong_c / n_c (1 - recall).
  A class with no validation error keeps nothing unless the others cannot
  absorb the budget; a warning names such classes.
  Under both, if the weighted classes cannot absorb the budget, the rest is
  shared in proportion to the remaining class sizes.

`min_per_class` m (any rule): every class keeps at least min(m, n_c). The
rule's quotas are raised to that floor and the examples this costs are taken
from the classes keeping the most (their quotas are lowered evenly, never below
their own floor; leftover units from the highest labels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pruning.errors import UserError
from pruning.registry import Registry


@dataclasses.dataclass(frozen=True)
class ClassRule:
  """`quotas(counts, k, *, class_errors) -> quotas` (None: no quotas). A rule that
  shares the budget by class errors names how to read them from a manifest
  (`class_errors(manifest)`), and the subset records them."""

  quotas: Callable[..., np.ndarray | None]
  class_errors: Callable[..., list | None] | None = None


CLASS_RULES: Registry[ClassRule] = Registry("class rule")


def register_class_rule(name: str, *, description: str, class_errors: Callable[..., list | None] | None = None):
  """Decorator: registers `quotas(counts, k, *, class_errors) -> quotas or None` as class rule `name`."""

  def decorate(quotas):
    CLASS_RULES.register(name, ClassRule(quotas, class_errors), description=description)
    return quotas

  return decorate


def water_fill(capacity: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
  """Whole quotas q <= capacity, summing to k, proportional to `weights` until capped.

  Finds t with sum(min(capacity, t * weights)) = k, then rounds by largest
  remainder. Budget that the positively weighted classes cannot hold is
  shared in proportion to the capacity left elsewhere.
  """
  capacity = np.asarray(capacity, np.int64)
  weights = np.asarray(weights, np.float64)
  if k > int(capacity.sum()):
    raise ValueError(f"budget {k} exceeds the total capacity {int(capacity.sum())}")
  quotas = np.zeros_like(capacity)
  active = (weights > 0) & (capacity > 0)
  if not active.any() or k == 0:
    if k == 0:
      return quotas
    return water_fill(capacity, k, capacity.astype(np.float64))
  if k >= int(capacity[active].sum()):
    quotas[active] = capacity[active]
    rest = capacity - quotas
    remaining = k - int(quotas.sum())
    return quotas + (water_fill(rest, remaining, rest.astype(np.float64)) if remaining else 0)
  # The level t at which each active class saturates is capacity / weight.
  index = np.flatnonzero(active)
  saturation = capacity[index] / weights[index]
  order = np.argsort(saturation, kind="stable")
  sat_sorted = saturation[order]
  cap_sorted = capacity[index][order].astype(np.float64)
  weight_sorted = weights[index][order]
  # Budget used at level sat_sorted[j]: classes before j full, the rest at t * w.
  full_before = np.concatenate([[0.0], np.cumsum(cap_sorted)[:-1]])
  weight_from = np.cumsum(weight_sorted[::-1])[::-1]
  used = full_before + sat_sorted * weight_from
  j = int(np.searchsorted(used, k, side="left"))
  level = (k - full_before[j]) / weight_from[j]
  exact = np.minimum(capacity[index].astype(np.float64), level * weights[index])
  whole = np.minimum(np.floor(exact + 1e-9), capacity[index]).astype(np.int64)
  remainder = k - int(whole.sum())
  if remainder > 0:
    fractions = np.where(whole < capacity[index], exact - whole, -np.inf)
    # Largest fraction first; ties go to the lower class label.
    by_fraction = np.lexsort((index, -fractions))
    whole[by_fraction[:remainder]] += 1
  elif remainder < 0:  # floating error pushed a floor over k: take back from the largest fractions' tail
    by_fraction = np.lexsort((-index, exact - whole))
    whole[by_fraction[:-remainder]] -= 1
  quotas[index] = whole
  return quotas


def proportional_quotas(counts: np.ndarray, k: int) -> np.ndarray:
  return water_fill(counts, k, counts)


def balanced_quotas(counts: np.ndarray, k: int) -> np.ndarray:
  present = int(np.count_nonzero(counts))
  if k < present:
    raise UserError(
      f"balanced selection of {k} examples cannot keep one of each of {present} classes:"
      f" keep at least {present} or use --class-rule proportional"
    )
  return water_fill(counts, k, (counts > 0).astype(np.float64))


def drop_quotas(counts: np.ndarray, k: int, class_errors) -> np.ndarray:
  """DRoP quotas: proportional to each class's validation error (1 - recall)."""
  errors = _checked_errors(counts, class_errors)
  if not np.any(errors[counts > 0] > 0):
    raise UserError(
      "class rule 'drop' shares the budget by validation error, but every class has zero"
      " validation error: use --class-rule balanced or proportional"
    )
  return water_fill(counts, k, errors)


def _checked_errors(counts: np.ndarray, class_errors) -> np.ndarray:
  if class_errors is None:
    raise UserError(
      "class rule 'drop' needs each class's validation error, and the manifest has none: score with a"
      " validation split (`dataset: {validation: 0.1}` or --validation 0.1), or pass class_errors"
    )
  errors = np.array([np.nan if e is None else e for e in class_errors], dtype=np.float64)
  if errors.ndim != 1 or len(errors) < len(counts):
    raise UserError(
      f"class rule 'drop' got validation errors for {errors.size} classes but the labels go up to"
      f" {len(counts) - 1}: give one error per class"
    )
  errors = errors[: len(counts)]
  missing = np.flatnonzero(np.isnan(errors) & (counts > 0))
  if missing.size:
    raise UserError(
      f"class rule 'drop' has no validation error for class {int(missing[0])} (no validation"
      " examples of it): use a larger validation split or --class-rule balanced"
    )
  if np.any((errors[~np.isnan(errors)] < 0) | (errors[~np.isnan(errors)] > 1)):
    raise UserError("class rule 'drop' needs validation errors in [0, 1] (1 - recall)")
  return np.nan_to_num(errors, nan=0.0)


def apply_floor(quotas: np.ndarray, counts: np.ndarray, k: int, min_per_class: int) -> np.ndarray:
  """Raises every class to min(min_per_class, n_c), paying from the largest quotas."""
  if isinstance(min_per_class, bool) or not isinstance(min_per_class, (int, np.integer)) or min_per_class < 0:
    raise UserError(f"min_per_class {min_per_class!r} must be a whole number >= 0")
  floor = np.minimum(counts, int(min_per_class))
  if int(floor.sum()) > k:
    raise UserError(
      f"min_per_class {min_per_class} needs {int(floor.sum())} examples across"
      f" {int(np.count_nonzero(counts))} classes but only {k} are kept: keep more or lower the minimum"
    )
  raised = np.maximum(quotas, floor)
  excess = int(raised.sum()) - k
  if excess == 0:
    return raised

  def used(level: int) -> int:
    return int(np.maximum(floor, np.minimum(raised, level)).sum())

  # The lowest level whose cut still keeps at least k.
  low, high = 0, int(raised.max())
  while low < high:
    middle = (low + high) // 2
    if used(middle) >= k:
      high = middle
    else:
      low = middle + 1
  lowered = np.maximum(floor, np.minimum(raised, low))
  surplus = int(lowered.sum()) - k
  if surplus:
    at_level = np.flatnonzero((lowered == low) & (lowered > floor))[::-1]
    lowered[at_level[:surplus]] -= 1
  return lowered


def class_quotas(labels: np.ndarray, k: int, rule: str, *, class_errors=None) -> np.ndarray | None:
  """Per-class quotas (indexed by label) for `rule`; None for `global`."""
  return CLASS_RULES.get(rule).quotas(np.bincount(labels), k, class_errors=class_errors)


def _validation_errors(smoothed: bool):
  def read(manifest) -> list | None:
    from pruning.selection import validation_errors  # beside select, which reads it too

    return validation_errors(manifest, smoothed=smoothed)

  return read


register_class_rule("global", description="no quotas: the strategy's top k over all classes")(
  lambda counts, k, **_: None
)
register_class_rule("proportional", description="every class keeps the same fraction (the default)")(
  lambda counts, k, **_: proportional_quotas(counts, k)
)
register_class_rule("balanced", description="equal counts per class, capped at class size")(
  lambda counts, k, **_: balanced_quotas(counts, k)
)
register_class_rule(
  "drop",
  description="quotas by each class's smoothed validation error (DRoP; needs a validation split when scoring)",
  class_errors=_validation_errors(smoothed=True),
)(drop_quotas)
register_class_rule(
  "drop_raw",
  description="quotas by the raw validation error, as in the DRoP paper (can drop a class whole)",
  class_errors=_validation_errors(smoothed=False),
)(drop_quotas)
