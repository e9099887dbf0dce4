"""Class-aware subset selection: a strategy x a class rule x a budget."""

from __future__ import annotations

import numpy as np

from pruning.errors import UserError, unknown_name_error
from pruning.manifest import Manifest
from pruning.selection.budget import parse_keep, resolve_keep
from pruning.selection.class_quotas import CLASS_RULES, class_quotas
from pruning.selection.strategies import STRATEGIES, difficulty, preference_order


def take_by_quota(order: np.ndarray, labels: np.ndarray, quotas: np.ndarray) -> np.ndarray:
  """The first `quotas[c]` rows of each class `c` in preference `order`."""
  ordered_labels = labels[order]
  by_class = np.argsort(ordered_labels, kind="stable")
  sorted_labels = ordered_labels[by_class]
  starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
  rank_in_class = np.empty(len(order), np.int64)
  rank_in_class[by_class] = np.arange(len(order)) - starts
  return order[rank_in_class < quotas[ordered_labels]]


def select(
    manifest: Manifest,
    *,
    keep,
    strategy: str = "hardest",
    class_rule: str = "global",
    score: str | None = None,
    seed: int = 0,
    beta: float = 0.1,
    temperature: float = 1.0,
    weighting: str = "softmax",
) -> Manifest:
  """Keeps `keep` examples of `manifest` and returns them as a subset manifest.

  Args:
    keep: a fraction in (0, 1] or a count (see `parse_keep`).
    strategy: `hardest`, `easiest`, `random`, `offset` or `probabilistic`
      (see `pruning.selection.strategies`).
    class_rule: `global`, `proportional` or `balanced` (see `class_quotas`).
    score: the score column ranking examples (not needed for `random`).
    seed: the seed of `random` and `probabilistic`; the same seed gives the
      same subset.
    beta: `offset`'s fraction of hardest examples dropped first.
    temperature, weighting: `probabilistic`'s sampling weights.
  """
  if strategy not in STRATEGIES:
    raise unknown_name_error("strategy", strategy, STRATEGIES)
  if class_rule not in CLASS_RULES:
    raise unknown_name_error("class rule", class_rule, CLASS_RULES)
  table = manifest.table
  n = len(table)
  k = resolve_keep(keep, n)
  hardness = None
  if strategy != "random":
    if score is None and len(manifest.scores) == 1:
      score = next(iter(manifest.scores))
    if score is None:
      raise UserError(
          f"strategy {strategy!r} needs a score and the manifest has"
          f" {len(manifest.scores)} ({', '.join(manifest.scores) or 'none'}): pass --score NAME"
      )
    harder = manifest.score_info(score)["harder"]
    hardness = difficulty(table[score].to_numpy(), harder)
  order = preference_order(strategy, n=n, difficulty=hardness, seed=seed, beta=beta,
                           temperature=temperature, weighting=weighting)
  labels = table["label"].to_numpy()
  quotas = class_quotas(labels, k, class_rule)
  rows = order[:k] if quotas is None else take_by_quota(order, labels, quotas)
  kept_labels = np.bincount(labels[rows], minlength=int(labels.max()) + 1)
  return manifest.take(rows, selection={
      "strategy": strategy,
      "class_rule": class_rule,
      "keep": parse_keep(keep),
      "kept": int(len(rows)),
      "of": n,
      "score": score if strategy != "random" else None,
      "seed": int(seed),
      **({"beta": beta} if strategy == "offset" else {}),
      **({"temperature": temperature, "weighting": weighting} if strategy == "probabilistic" else {}),
      "kept_per_class": kept_labels.tolist(),
  })


__all__ = ["CLASS_RULES", "STRATEGIES", "class_quotas", "parse_keep", "resolve_keep", "select"]
