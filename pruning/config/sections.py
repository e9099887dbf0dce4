"""The sections of a pipeline config (`dataset`, `proxy`, each of
`selections`, `sweep`, `retrain`), each a dataclass that checks its fields."""

from __future__ import annotations

import dataclasses

from pruning.errors import UserError, unknown_name_error
from pruning.retraining import BUDGETS, REMEDIES, RemedyOptions
from pruning.runtime.atomic import check_path_component
from pruning.runtime.fields import option
from pruning.runtime.validation import check_fields, parse_seeds
from pruning.scores.embedding import DEFAULT_SIMILARITY
from pruning.scores.tracin import DEFAULT_TRACIN_CHECKPOINTS
from pruning.selection import SelectionRule
from pruning.training import DEFAULT_WINDOW


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProxyConfig:
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  # Scores are read early in training (Data Diet: epoch 20 of 200); null: as
  # many epochs as `training`.
  epochs: int | None = 3
  vog_checkpoints: int | None = option(
    None, metavar="K", help="VoG reads K evenly spaced proxy epochs of its window (default: every epoch)"
  )
  vog_window: str = option(
    "all",
    choices=("all", "early", "late"),
    help="the proxy epochs VoG reads: all, early (first half) or late (second half) (default: %(default)s)",
  )
  dynamics_window: int = option(
    DEFAULT_WINDOW, metavar="J", help="epochs per window of dynamic_uncertainty (default: %(default)s, as He et al.)"
  )
  prototypes: int | None = option(
    None, metavar="K", help="k-means prototypes of prototype_distance (default: the number of classes)"
  )
  duplicate_similarity: float = option(
    DEFAULT_SIMILARITY,
    metavar="COS",
    help="is_duplicate: cosine similarity above which an embedding is a near-duplicate (default: %(default)s)",
  )
  tracin_checkpoints: int = option(
    DEFAULT_TRACIN_CHECKPOINTS,
    metavar="K",
    help="tracin_self, tracin_test and `pruning influence` sum over K evenly spaced proxy epochs"
    " (default: %(default)s)",
  )
  keep_checkpoints: bool = option(
    False,
    help="keep the proxies' TracIn checkpoints (the tracin_checkpoints epochs) in $PRUNING_CACHE_DIR,"
    " so `pruning influence` reads them instead of training the proxies again",
  )

  def __post_init__(self):
    # A count (5 means seeds 0..4), a list or "0,3,7": stored as a tuple.
    object.__setattr__(self, "seeds", parse_seeds(self.seeds, where="proxy.seeds"))
    check_fields(self, "proxy")
    for name in ("epochs", "vog_checkpoints", "tracin_checkpoints"):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise UserError(f"proxy: {name} must be at least 1, got {value}")
    if self.dynamics_window < 2:
      raise UserError(f"proxy: dynamics_window must be at least 2 epochs, got {self.dynamics_window}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectionConfig(SelectionRule):
  """One of a pipeline's `selections`: a named `pruning.selection.SelectionRule`."""

  name: str

  @property
  def where(self) -> str:
    return f"selection {self.name!r}"

  def __post_init__(self):
    check_path_component(self.name, what="selection name")
    super().__post_init__()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepConfig:
  """A study: every selection rule at every fraction kept in `keep`, and
  each retrained with every remedy in `remedy` (default: `retrain.remedy`)."""

  keep: tuple[float | int, ...] = ()
  remedy: tuple[str, ...] = ()

  def __post_init__(self):
    if isinstance(self.remedy, (str, list)):
      object.__setattr__(self, "remedy", tuple([self.remedy] if isinstance(self.remedy, str) else self.remedy))
    for name in self.remedy:
      REMEDIES.get(name)
    if len(set(self.remedy)) != len(self.remedy):
      raise UserError(f"sweep.remedy repeats a remedy: {list(self.remedy)}")


@dataclasses.dataclass(frozen=True)
class Arm:
  """One selection to run: a rule at one budget (`name` is `rule@keep` in a sweep)."""

  name: str
  rule: str
  selection: SelectionConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrainConfig:
  seeds: tuple[int, ...] = (0, 1, 2)
  budget: str = "steps"
  include_full: bool = True
  remedy: str = "none"  # a training-time remedy for class imbalance (`pruning.retraining.remedies`)
  remedy_options: dict = dataclasses.field(default_factory=dict)  # its hyperparameters, e.g. {sampling_power: 0.5}

  def __post_init__(self):
    object.__setattr__(self, "seeds", parse_seeds(self.seeds, where="retrain.seeds"))
    check_fields(self, "retrain")
    if self.budget not in BUDGETS:
      raise unknown_name_error("retraining budget", self.budget, BUDGETS)
    REMEDIES.get(self.remedy)
    try:
      RemedyOptions(**self.remedy_options)
    except TypeError:
      names = [f.name for f in dataclasses.fields(RemedyOptions)]
      unknown = next(str(k) for k in self.remedy_options if k not in names)
      raise unknown_name_error("remedy option", unknown, names) from None
