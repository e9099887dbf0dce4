"""How to flag (`FlagOptions`), and the registry of flagging methods it names."""

from __future__ import annotations

import dataclasses

from pruning.errors import UserError, unknown_name_error
from pruning.registry import Registry
from pruning.runtime.fields import described, option

# Filled by `pruning.flagging.methods` (the built-ins) and by plugins.
FLAGGING_METHODS: Registry = Registry("flagging method")
SPLITS = ("train", "all")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlagOptions:
  """How to flag: see `pruning.flagging`."""

  method: str = option("confident_learning", help=lambda: f"{described(FLAGGING_METHODS)} (default: %(default)s)")
  folds: int = option(5, help="out-of-fold probabilities (default: %(default)s)")
  percentile: float = option(
    99.0,
    help="aum_threshold: the percentile of the threshold samples' AUM that is the cutoff (default: %(default)s)",
  )
  score: str | None = option(None, help="ranked: the score ranking within a class (default: aum, el2n, loss)")
  per_class: bool = option(
    False, help="aum_threshold: flag at most confident learning's estimated count in each class (long-tailed data)"
  )
  seed: int = option(0, help="seed of the folds and threshold samples")
  # "all": the test split's labels are examined too (confident learning)
  split: str = option(
    "train",
    choices=SPLITS,
    help="train: the training split's labels; all: the test split's too, by confident learning on the out-of-fold"
    " proxies' average (test suspects go to --suspects and the provenance) (default: %(default)s)",
  )

  def __post_init__(self):
    from pruning.runtime.validation import check_fields, check_seed

    check_fields(self, "flag")
    check_seed(self.seed, "flag")
    FLAGGING_METHODS.get(self.method)
    p = self.percentile
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 100:
      raise UserError(f"percentile {p!r} must be a number strictly between 0 and 100 (Pleiss et al. use 99)")
    if self.split not in SPLITS:
      raise unknown_name_error("flag split", str(self.split), SPLITS)
    if isinstance(self.folds, bool) or not isinstance(self.folds, int) or not 2 <= self.folds <= 20:
      raise UserError(f"folds {self.folds!r} must be a whole number from 2 to 20 (cleanlab's default is 5)")
