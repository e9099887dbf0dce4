"""Retraining a fresh model on a subset and evaluating it on the test split."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pruning.data.dataset import Dataset
from pruning.data.normalization import Normalizer
from pruning.errors import UserError
from pruning.evaluation import evaluate_logits, summarize
from pruning.manifest import Manifest
from pruning.training import TrainConfig, TrainedModels, steps_per_epoch, train_models

BUDGETS = ("steps", "epochs")


@dataclasses.dataclass
class RetrainResult:
  """Models trained on a subset, and their test metrics (one row per seed)."""

  name: str
  num_examples: int
  num_steps: int
  models: TrainedModels | None  # None when the result was read back by a resumed run
  per_seed: pd.DataFrame

  def summary(self) -> dict:
    return {"name": self.name, "kept": self.num_examples, "steps": self.num_steps, **summarize(self.per_seed)}


def subset_rows(dataset: Dataset, subset: Manifest | None) -> np.ndarray:
  """Training-split rows of `subset` (all rows when None), checked against the data."""
  return np.arange(len(dataset.train)) if subset is None else subset.dataset_rows(dataset)


def retrain(
  dataset: Dataset,
  subset: Manifest | None = None,
  *,
  model: str,
  model_options: dict | None = None,
  config: TrainConfig,
  seeds: Sequence[int] = (0,),
  budget: str = "steps",
  name: str | None = None,
  checkpointer=None,
  progress: bool = True,
) -> RetrainResult:
  """Trains fresh models on `subset` (or all data) and evaluates them on the test split.

  With `budget="steps"` (the default, as in Data Diet) the subset gets as many
  optimisation steps as `config.epochs` epochs on the full training split;
  with `budget="epochs"` it gets `config.epochs` epochs of its own. Inputs are
  normalised with the full training split's statistics either way. `name`
  labels the result: by default `full` for all data, else the subset's
  strategy and class rule (`hardest_proportional`).
  """
  if name is None:
    name = (
      "full"
      if subset is None
      else "_".join(str((subset.selection or {}).get(key, "subset")) for key in ("strategy", "class_rule"))
    )
  if budget not in BUDGETS:
    raise UserError(f"budget {budget!r} is unknown: use 'steps' or 'epochs'")
  if dataset.test is None:
    raise UserError(
      f"dataset {dataset.spec!r} has no test split: give one (x_test/y_test, a 'split' column)"
      " or hold out part of the training data with --holdout 0.2"
    )
  rows = subset_rows(dataset, subset)
  num_steps = None
  if budget == "steps":
    num_steps = config.epochs * steps_per_epoch(len(dataset.train), config.batch_size)
  models = train_models(
    dataset.train.x,
    dataset.train.y,
    rows=rows,
    model=model,
    model_options=model_options,
    num_classes=dataset.num_classes,
    seeds=seeds,
    config=config,
    normalizer=Normalizer.fit(dataset.train.x, mode=dataset.normalize),
    num_steps=num_steps,
    record_dynamics=False,
    desc=f"retrain {name}",
    checkpointer=checkpointer,
    progress=progress,
  )
  per_seed = evaluate_logits(
    dataset.test.y, models.logits(dataset.test.x), num_classes=dataset.num_classes, seeds=models.seeds
  )
  return RetrainResult(name=name, num_examples=len(rows), num_steps=models.num_steps, models=models, per_seed=per_seed)
