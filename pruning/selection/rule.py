"""What to keep (`SelectionRule`): the one place each selection option, its
default and its check are written. `select`, a pipeline config's
`selections` and the flags of `pruning select` all derive from it."""

from __future__ import annotations

import dataclasses

from pruning.errors import unknown_name_error
from pruning.runtime.fields import choices_text, described, option
from pruning.runtime.validation import check_fields, check_seed
from pruning.selection.budget import parse_keep
from pruning.selection.class_quotas import CLASS_RULES
from pruning.selection.coverage import DEFAULT_STRATA
from pruning.selection.strategies import STRATEGIES, WEIGHTINGS, check_options


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectionRule:
  """A strategy x a class rule x a budget, checked when built.

  keep: a fraction in (0, 1] or a count (see `parse_keep`).
  strategy: `hardest`, `easiest`, `random`, `offset`, `ccs` or
    `probabilistic` (see `pruning.selection.strategies`).
  class_rule: `proportional` (the default: every class keeps the same
    fraction), `balanced`, `drop`, `drop_raw` or `global` (see
    `pruning.selection.class_quotas`). Under a quota rule the strategy runs
    within each class.
  score: the score column ranking examples (not needed for `random`).
  seed: the seed of `random`, `ccs` and `probabilistic`; the same seed gives
    the same subset.
  beta: the fraction of hardest examples `offset` and `ccs` drop first.
  temperature, weighting: `probabilistic`'s sampling weights.
  num_strata: `ccs`'s number of equal-width score strata (50 in the paper).
  min_per_class: every class keeps at least this many (or all it has).
    Under `global` the global choice's per-class counts become quotas.
  drop_suspects: drop the examples a flagged manifest marks `is_suspect`
    (`pruning.flag_label_issues`) before any other rule; `keep` still
    counts from the whole manifest (all that remain, if fewer).
  drop_duplicates: likewise, drop the semantic near-duplicates the
    `is_duplicate` score marks (`pruning.scores.embedding`).
  """

  keep: float | int | str | None = None  # set by the sweep in a study; "50%" too; a required flag
  strategy: str = option("hardest", help=lambda: f"{described(STRATEGIES)} (default: %(default)s)")
  class_rule: str = option("proportional", help=lambda: f"{described(CLASS_RULES)} (default: %(default)s)")
  score: str | None = option(None, help="score column to rank by (default: the only one)")
  seed: int = option(0, help="seed of random, ccs and probabilistic (default: %(default)s)")
  beta: float = option(0.1, help="offset and ccs: fraction of hardest examples dropped (default: %(default)s)")
  temperature: float = option(1.0, help="probabilistic: softmax temperature (default: %(default)s)")
  weighting: str = option(
    "softmax",
    help=f"probabilistic: {choices_text(WEIGHTINGS)}: softmax(difficulty / T) or linear in difficulty"
    " (default: %(default)s)",
  )
  num_strata: int = option(DEFAULT_STRATA, help="ccs: equal-width score strata (default: %(default)s)")
  min_per_class: int | None = option(None, help="every class keeps at least this many examples (or all it has)")
  drop_suspects: bool = option(
    False, help="drop the examples a flagged manifest marks as likely mislabeled (pruning flag) before the rule"
  )
  drop_duplicates: bool = option(
    False, help="drop the semantic near-duplicates the is_duplicate score marks (SemDeDup) before the rule"
  )

  @property
  def where(self) -> str:
    """How messages name this rule."""
    return "selection"

  def __post_init__(self):
    where = self.where
    if self.keep is not None:  # first: its own message names the forms a budget takes
      parse_keep(self.keep)
    check_fields(self, where)
    check_seed(self.seed, where)
    if self.strategy not in STRATEGIES:
      raise unknown_name_error(f"strategy in {where}", self.strategy, STRATEGIES)
    if self.class_rule not in CLASS_RULES:
      raise unknown_name_error(f"class rule in {where}", self.class_rule, CLASS_RULES)
    # Options and budget are checked here, before any proxy training, not when the selection runs.
    check_options(
      self.strategy, beta=self.beta, temperature=self.temperature, weighting=self.weighting, num_strata=self.num_strata
    )

  def options(self) -> dict:
    """The rule's fields, as keywords of `pruning.selection.select`."""
    return {field.name: getattr(self, field.name) for field in dataclasses.fields(SelectionRule)}


__all__ = ["SelectionRule"]
