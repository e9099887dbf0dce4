"""How a budget of k examples is shared between classes.

- `global`: no quotas; the strategy's top k over all classes.
- `proportional`: every class keeps the same fraction k / N, rounded by largest
  remainder (ties to the lower label) so quotas sum to exactly k.
- `balanced`: equal counts per class, capped at class size; what a small class
  cannot use is passed on equally to the others (water-filling). Leftover
  units that do not divide evenly go to the lowest labels.
"""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError, unknown_name_error

CLASS_RULES = ("global", "proportional", "balanced")


def proportional_quotas(counts: np.ndarray, k: int) -> np.ndarray:
  exact = k * counts / counts.sum()
  quotas = np.floor(exact).astype(np.int64)
  remainder = k - int(quotas.sum())
  if remainder:
    fractions = exact - quotas
    # Largest fraction first; ties go to the lower class label.
    order = np.lexsort((np.arange(len(counts)), -fractions))
    quotas[order[:remainder]] += 1
  return quotas


def balanced_quotas(counts: np.ndarray, k: int) -> np.ndarray:
  present = np.flatnonzero(counts > 0)
  if k < len(present):
    raise UserError(
        f"balanced selection of {k} examples cannot keep one of each of {len(present)} classes:"
        f" keep at least {len(present)} or use --class-rule proportional"
    )
  quotas = np.zeros_like(counts)
  remaining = k
  by_size = present[np.argsort(counts[present], kind="stable")]
  for position, label in enumerate(by_size):
    share = remaining // (len(by_size) - position)
    if counts[label] <= share:
      quotas[label] = counts[label]
      remaining -= int(counts[label])
      continue
    # Every class from here on is larger than the equal share.
    rest = np.sort(by_size[position:])
    quotas[rest] = share
    leftover = remaining - share * len(rest)
    quotas[rest[:leftover]] += 1
    break
  return quotas


def class_quotas(labels: np.ndarray, k: int, rule: str) -> np.ndarray | None:
  """Per-class quotas (indexed by label) for `rule`; None for `global`."""
  if rule == "global":
    return None
  counts = np.bincount(labels)
  if rule == "proportional":
    return proportional_quotas(counts, k)
  if rule == "balanced":
    return balanced_quotas(counts, k)
  raise unknown_name_error("class rule", rule, CLASS_RULES)
