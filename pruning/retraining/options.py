"""The imbalance remedies' hyperparameters (`RemedyOptions`): each one's default,
check, flag and help in one place (`pruning.retraining.remedies` reads them)."""

from __future__ import annotations

import dataclasses
import math

from pruning.errors import UserError
from pruning.runtime.fields import option


@dataclasses.dataclass(frozen=True, kw_only=True)
class RemedyOptions:
  """The remedies' hyperparameters (each remedy reads its own; see the module docstring)."""

  sampling_power: float = option(
    1.0,
    metavar="Q",
    help="oversample: class c's share of the batches goes as n_c^(1-Q): 1 balanced, 0.5 square root, 0 natural"
    " (default: %(default)s)",
  )
  beta: float | None = option(
    None, help="reweight: Cui et al.'s effective-number beta in [0, 1), e.g. 0.999 (default: 1/n_c weights)"
  )
  tau: float = option(1.0, help="logit_adjust and threshold: tau (default: %(default)s)")
  k_neighbors: int = option(5, help="smote and family: neighbours (default: %(default)s)")
  seed: int = option(0, flag="--remedy-seed", help="smote and family: random state (default: %(default)s)")
  space: str = option(
    "input",
    flag="--smote-space",
    choices=("input", "features"),
    help="smote and family: on the input rows, or on the trained model's penultimate features with the head"
    " re-fitted (default: %(default)s)",
  )
  head_epochs: int = option(20, help="--smote-space features: head epochs (default: %(default)s)")

  def __post_init__(self):
    q = self.sampling_power
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
      raise UserError(f"sampling_power {q!r} must lie in [0, 1]: 1 balances the classes, 0 keeps their frequencies")
    if self.beta is not None and (isinstance(self.beta, bool) or not 0 <= self.beta < 1):
      raise UserError(f"beta {self.beta!r} must lie in [0, 1) (Cui et al. use 0.9 to 0.9999), or be left out for 1/n_c")
    if (
      isinstance(self.tau, bool)
      or not isinstance(self.tau, (int, float))
      or not (self.tau >= 0 and math.isfinite(self.tau))
    ):
      raise UserError(f"tau {self.tau!r} must be a number >= 0 (Menon et al. use 1)")
    if isinstance(self.k_neighbors, bool) or not isinstance(self.k_neighbors, int) or self.k_neighbors < 1:
      raise UserError(f"k_neighbors {self.k_neighbors!r} must be a whole number >= 1 (SMOTE uses 5)")
    if self.space not in ("input", "features"):
      raise UserError(f"space {self.space!r} must be 'input' (the rows) or 'features' (the model's penultimate layer)")
    if isinstance(self.head_epochs, bool) or not isinstance(self.head_epochs, int) or self.head_epochs < 1:
      raise UserError(f"head_epochs {self.head_epochs!r} must be a whole number >= 1")
