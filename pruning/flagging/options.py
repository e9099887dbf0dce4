"""How to flag (`FlagOptions`), and the registry of flagging methods it names."""

from __future__ import annotations

import dataclasses

from pruning.errors import UserError, unknown_name_error
from pruning.registry import Registry

# Filled by `pruning.flagging.methods` (the built-ins) and by plugins.
FLAGGING_METHODS: Registry = Registry("flagging method")
SPLITS = ("train", "all")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlagOptions:
  """How to flag: see `pruning.flagging`."""

  method: str = "confident_learning"
  folds: int = 5
  percentile: float = 99.0
  score: str | None = None
  per_class: bool = False
  seed: int = 0
  split: str = "train"  # "all": the test split's labels are examined too (confident learning)

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
