"""What to keep (`SelectionRule`): the one place each selection option, its
default and its check are written. `select`, a pipeline config's
`selections` and the flags of `pruning select` all derive from it."""

from __future__ import annotations

import dataclasses

from pruning.errors import unknown_name_error
from pruning.runtime.validation import check_fields, check_seed
from pruning.selection.budget import parse_keep
from pruning.selection.class_quotas import CLASS_RULES
from pruning.selection.coverage import DEFAULT_STRATA
from pruning.selection.strategies import STRATEGIES, check_options


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

  keep: float | int | str | None = None  # set by the sweep in a study; "50%" too
  strategy: str = "hardest"
  class_rule: str = "proportional"
  score: str | None = None
  seed: int = 0
  beta: float = 0.1
  temperature: float = 1.0
  weighting: str = "softmax"
  num_strata: int = DEFAULT_STRATA
  min_per_class: int | None = None
  drop_suspects: bool = False  # drop the examples `flag` marks as likely mislabeled, before this rule
  drop_duplicates: bool = False  # drop the near-duplicates the is_duplicate score marks, before this rule

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
