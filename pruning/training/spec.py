"""What a trainer is asked to do: a `ModelSpec` (which model, one per seed,
trained how) fitted to a `TrainData` (which examples).

Every trainer takes these two: proxy training (`pruning.scores.run`),
retraining on a subset (`pruning.retraining`) and flagging's fold and
threshold-sample proxies (`pruning.flagging.training`):

    spec = ModelSpec(model="mlp", options={"hidden": [64]}, seeds=3, training=TrainConfig(epochs=5))
    models = train_models(TrainData.from_dataset(dataset), spec.for_data(dataset))

A manifest records the spec of its proxies (its provenance's `model`,
`training` and `seeds`); `ModelSpec.from_provenance` reads it back, so what
trains the proxies again (flagging) needs nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pruning.errors import UserError
from pruning.models import validate_model_options, with_data_options
from pruning.runtime.validation import parse_seeds
from pruning.training.balance import ClassBalance
from pruning.training.config import TrainConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
  """A registered `model` with its `options`, one model per seed (a count N
  means seeds 0..N-1), trained as `training` says. Checked when built."""

  model: str = "mlp"
  options: dict = dataclasses.field(default_factory=dict)
  seeds: Any = (0,)  # a count N (seeds 0..N-1) or the seeds; a tuple of ints once built
  training: TrainConfig = TrainConfig()

  def __post_init__(self):
    if not isinstance(self.training, TrainConfig):
      raise UserError(f"training must be a TrainConfig, got {type(self.training).__name__}")
    seeds = self.seeds if isinstance(self.seeds, (int, str)) else list(self.seeds)
    object.__setattr__(self, "seeds", parse_seeds(seeds, where="seeds"))
    object.__setattr__(self, "options", validate_model_options(self.model, self.options))

  def for_data(self, dataset) -> ModelSpec:
    """The spec with what the model must know of `dataset` among its options
    (a tokenizer's `vocab_size` and `pad_id`), unless given."""
    return dataclasses.replace(self, options=with_data_options(self.model, self.options, dataset))

  @classmethod
  def from_provenance(cls, provenance: dict, *, source: str = "the manifest's provenance") -> ModelSpec:
    """The spec a manifest's proxies were trained with (its `model`, `training` and `seeds`)."""
    try:
      model = provenance["model"]
      return cls(
        model=model["name"],
        options=dict(model.get("options") or {}),
        seeds=tuple(provenance["seeds"]),
        training=TrainConfig(**provenance["training"]),
      )
    except (KeyError, TypeError, AttributeError) as error:
      raise UserError(f"{source} records no proxy training this version can read ({error}): rescore") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainData:
  """The examples a trainer fits.

  `x` (N, ...) raw inputs and `y` (N,) integer labels of `num_classes`
  classes. `rows`: train on `x[rows]` only (subsets pass the full arrays and
  their rows, so every subset of a dataset reuses one compiled step); an
  (S, n) array gives each of the spec's S seeds its own n rows, so S models
  on S subsets train in one vmapped program (the datamodels of
  `studies/influence_lds.py`), with one normaliser fitted on their union.
  `lengths`: for token inputs (N, L), each row's length (the position after
  its last real token), for length-bucketed batches. `normalizer`: the input
  standardisation; fitted on the training rows with `normalize` (`auto`,
  `per_feature`, `per_channel`, `global`, `none`) when not given.
  `balance`: class-aware sampling, loss weights or a logit offset (what the
  imbalance remedies set).
  """

  x: Any
  y: np.ndarray
  num_classes: int
  rows: np.ndarray | None = None
  lengths: np.ndarray | None = None
  normalizer: Any = None
  normalize: str = "auto"
  balance: ClassBalance | None = None

  @classmethod
  def from_dataset(
    cls, dataset, *, labels: np.ndarray | None = None, num_classes: int | None = None, **fields
  ) -> TrainData:
    """A dataset's training split, with its normalisation mode and token
    lengths: `labels` and `num_classes` replace its own (flagging's threshold
    samples add a class); `fields` set the rest (`rows`, `normalizer`, ...)."""
    return cls(
      x=dataset.train.x,
      y=dataset.train.y if labels is None else labels,
      num_classes=dataset.num_classes if num_classes is None else num_classes,
      normalize=dataset.normalize,
      lengths=dataset.sequence_lengths(),
      **fields,
    )


__all__ = ["ModelSpec", "TrainData"]
