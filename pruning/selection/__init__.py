"""Class-aware subset selection: a strategy x a class rule x a budget."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.runtime.validation import from_keywords
from pruning.selection.budget import parse_keep, resolve_keep
from pruning.selection.class_quotas import CLASS_RULES, ClassRule, apply_floor, class_quotas, register_class_rule
from pruning.selection.rule import SelectionRule
from pruning.selection.strategies import (
  OPTION_DEFAULTS,
  STRATEGIES,
  Strategy,
  choose,
  difficulty,
  register_strategy,
)


def class_order(labels: np.ndarray) -> np.ndarray:
  """A stable sort of rows by label (radix sort through a small dtype when labels allow)."""
  if len(labels) and labels.max() < np.iinfo(np.uint16).max:
    labels = labels.astype(np.uint16)
  return np.argsort(labels, kind="stable")


def choose_by_quota(labels: np.ndarray, quotas: np.ndarray, choose_in) -> np.ndarray:
  """`choose_in(rows, q)` run within each class, keeping `quotas[c]` of class c."""
  by_class = class_order(labels)
  bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(quotas)))])
  chosen = [choose_in(by_class[bounds[c] : bounds[c + 1]], int(quotas[c])) for c in np.flatnonzero(quotas)]
  return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def validation_errors(manifest: Manifest, *, smoothed: bool = True) -> list | None:
  """Per-class validation error of the proxies, if the manifest recorded it:
  with `smoothed`, the posterior mean (wrong + 1) / (n + 2) of the class's
  validation counts; else 1 - recall. None for a class without validation
  examples."""
  validation = manifest.provenance.get("validation")
  if not validation:
    return None
  recall = validation["per_class_recall"]
  counts = validation.get("examples_per_class")
  if not smoothed or counts is None:  # manifests before counts were recorded: the raw rule
    return [None if r is None else 1.0 - r for r in recall]
  return [None if r is None or not n else ((1.0 - r) * n + 1.0) / (n + 2.0) for r, n in zip(recall, counts)]


def select(manifest: Manifest, rule: SelectionRule | None = None, *, class_errors=None, **fields) -> Manifest:
  """Keeps `rule.keep` examples of `manifest` and returns them as a subset manifest.

  `rule` is a `SelectionRule` (each option documented there), or give its
  fields as keywords: `select(manifest, keep=0.5, strategy="hardest",
  score="el2n")`. `class_errors`: per-class error rates for `drop`; by
  default 1 - the validation recall recorded in the manifest when it was
  scored.
  """
  if rule is None:
    rule = from_keywords(SelectionRule, fields, what="selection option")
  elif fields:
    raise UserError(f"give a SelectionRule or its fields, not both (got {sorted(fields)})")
  if rule.keep is None:
    raise UserError("select needs keep: a fraction in (0, 1], e.g. 0.5 or 50%, or a count, e.g. 700")
  keep, strategy, class_rule, score, seed = rule.keep, rule.strategy, rule.class_rule, rule.score, rule.seed
  min_per_class = rule.min_per_class
  for flag, column, dropped, missing in (
    (
      "drop_suspects",
      "is_suspect",
      "suspects_dropped",
      "flag it first (`pruning flag MANIFEST --out FLAGGED`) and select from the flagged file",
    ),
    ("drop_duplicates", "is_duplicate", "duplicates_dropped", "score it with is_duplicate (--score is_duplicate)"),
  ):
    if getattr(rule, flag):
      if column not in manifest.table:
        raise UserError(f"the manifest has no {column} column: {missing}")
      marked = manifest.table[column].to_numpy(float) >= 0.5  # is_duplicate is 0 or 1, a float score column
      clean = manifest.take(np.flatnonzero(~marked), selection=None)
      rest = dataclasses.replace(
        rule, keep=min(resolve_keep(keep, len(manifest.table)), len(clean.table)), **{flag: False}
      )
      subset = select(clean, rest, class_errors=class_errors)
      subset.provenance["selection"].update(
        {"keep": parse_keep(keep), "of": len(manifest.table), flag: True, dropped: int(marked.sum())}
      )
      return subset
  rule_of_class = CLASS_RULES.get(class_rule)
  chosen = STRATEGIES.get(strategy)
  options = {
    "beta": rule.beta,
    "temperature": rule.temperature,
    "weighting": rule.weighting,
    "num_strata": rule.num_strata,
  }
  table = manifest.table
  n = len(table)
  if n == 0:
    raise UserError("the manifest has no rows, so there is nothing to select: score a dataset first")
  k = resolve_keep(keep, n)
  hardness = None
  if chosen.needs_score:
    if score is None and len(manifest.scores) == 1:
      score = next(iter(manifest.scores))
    if score is None:
      raise UserError(
        f"strategy {strategy!r} needs a score and the manifest has"
        f" {len(manifest.scores)} ({', '.join(manifest.scores) or 'none'}): pass --score NAME"
      )
    harder = manifest.score_info(score)["harder"]
    hardness = difficulty(table[score].to_numpy(), harder)
  labels = table["label"].to_numpy()
  rng = np.random.default_rng(seed)

  def choose_in(rows: np.ndarray | None, q: int) -> np.ndarray:
    group = None if hardness is None else (hardness if rows is None else hardness[rows])
    positions = choose(strategy, group, q, n=n if rows is None else len(rows), rng=rng, **options)
    return positions if rows is None else rows[positions]

  if rule_of_class.class_errors is not None and class_errors is None:
    class_errors = rule_of_class.class_errors(manifest)
  quotas = class_quotas(labels, k, class_rule, class_errors=class_errors)
  if quotas is not None:
    emptied = np.flatnonzero((quotas == 0) & (np.bincount(labels, minlength=len(quotas)) > 0))
    if len(emptied) and rule_of_class.class_errors is not None:
      warnings.warn(
        f"class rule {class_rule!r} keeps no example of class(es) {emptied.tolist()} (zero"
        " validation error): they will never be trained on; use class rule 'drop' (smoothed) or"
        " --min-per-class",
        UserWarning,
        stacklevel=2,
      )
  if quotas is None and min_per_class is None:
    rows = choose_in(None, k)
  else:
    if quotas is None:  # global with a floor: the global choice's class counts become quotas
      quotas = np.bincount(labels[choose_in(None, k)], minlength=labels.max() + 1)
    if min_per_class is not None:
      quotas = apply_floor(quotas, np.bincount(labels), k, min_per_class)
    rows = choose_by_quota(labels, quotas, choose_in)
  kept_labels = np.bincount(labels[rows], minlength=int(labels.max()) + 1)
  return manifest.take(
    rows,
    selection={
      "strategy": strategy,
      "class_rule": class_rule,
      "keep": parse_keep(keep),
      "kept": int(len(rows)),
      "of": n,
      "score": score if chosen.needs_score else None,
      "seed": int(seed),
      **{option: options[option] for option in chosen.options},
      **({"min_per_class": int(min_per_class)} if min_per_class is not None else {}),
      **(
        {"class_errors": [None if e is None else float(e) for e in class_errors]} if rule_of_class.class_errors else {}
      ),
      "kept_per_class": kept_labels.tolist(),
    },
  )


__all__ = [
  "CLASS_RULES",
  "OPTION_DEFAULTS",
  "STRATEGIES",
  "SelectionRule",
  "ClassRule",
  "Strategy",
  "class_quotas",
  "parse_keep",
  "register_class_rule",
  "register_strategy",
  "resolve_keep",
  "select",
]
