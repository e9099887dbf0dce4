"""Retraining a fresh model on a subset and evaluating it on the test split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.data.dataset import Dataset
from pruning.data.normalization import Normalizer
from pruning.errors import UserError
from pruning.evaluation import evaluate_logits, per_class_metrics, summarize
from pruning.manifest import Manifest
from pruning.retraining.remedies import IDENTITY, REMEDIES, RemedyOptions, check_remedy_data, register_remedy
from pruning.training import FrozenInputs, ModelSpec, TrainData, TrainedModels, steps_per_epoch, train_models

BUDGETS = ("steps", "epochs")


@dataclasses.dataclass
class RetrainResult:
  """Models trained on a subset, and their test metrics (one row per seed)."""

  name: str
  num_examples: int
  num_steps: int
  models: TrainedModels | None  # None when the result was read back by a resumed run
  per_seed: pd.DataFrame
  remedy: str = "none"
  synthetic: int = 0  # rows a remedy such as SMOTE added for training (never exported)
  per_class: pd.DataFrame | None = None  # precision, recall, F1, AUROC, AUPRC per class (means over seeds)
  test_logits: np.ndarray | None = None  # (S, N_test, C), as the metrics saw them (a threshold's offset included)

  def summary(self) -> dict:
    summary = {"name": self.name, "kept": self.num_examples, "steps": self.num_steps, "remedy": self.remedy}
    return {**summary, "synthetic": self.synthetic, **summarize(self.per_seed)}


def subset_rows(dataset: Dataset, subset: Manifest | None) -> np.ndarray:
  """Training-split rows of `subset` (all rows when None), checked against the data."""
  return np.arange(len(dataset.train)) if subset is None else subset.dataset_rows(dataset)


def retrain(
  dataset: Dataset,
  subset: Manifest | None = None,
  *,
  spec: ModelSpec,
  budget: str = "steps",
  remedy: str = "none",
  remedy_options: RemedyOptions | dict | None = None,
  name: str | None = None,
  checkpointer=None,
  progress: bool = True,
) -> RetrainResult:
  """Trains fresh models (`spec`: model, options, seeds, training) on `subset`
  (or all data) and evaluates them on the test split.

  With `budget="steps"` (the default, as in Data Diet) the subset gets as many
  optimisation steps as `spec.training.epochs` epochs on the full training
  split; with `budget="epochs"` it gets that many epochs of its own. Inputs are
  normalised with the full training split's statistics either way. `name`
  labels the result: by default `full` for all data, else the subset's
  strategy and class rule (`hardest_proportional`).

  `remedy` names a training-time remedy for class imbalance
  (`pruning.retraining.remedies`: oversample, undersample, reweight,
  logit_adjust, threshold, smote, borderline_smote, adasyn) with its
  `remedy_options` (`RemedyOptions` or its fields); the step budget is the
  same whatever the remedy.
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
  chosen = REMEDIES.get(remedy)
  if not isinstance(remedy_options, RemedyOptions):
    remedy_options = RemedyOptions(**(remedy_options or {}))
  check_remedy_data(dataset, remedy, remedy_options)
  rows = subset_rows(dataset, subset)
  if not isinstance(spec, ModelSpec):
    raise TypeError("retrain(dataset, subset, spec=ModelSpec(...)): the models to train are one ModelSpec")
  config = spec.training
  num_steps = None
  if budget == "steps":
    num_steps = config.epochs * steps_per_epoch(len(dataset.train), config.batch_size)
  normalizer = Normalizer.fit(dataset.train.x, mode=dataset.normalize)
  plan = chosen.prepare(
    dataset.train.x,
    dataset.train.y,
    rows,
    num_classes=dataset.num_classes,
    normalizer=normalizer,
    options=remedy_options,
    **({"feature_columns": dataset.feature_columns} if chosen.takes_columns else {}),
  )
  if plan.x is not None and plan.y is not None:  # a resampler's rows, already standardised
    data = TrainData(x=plan.x, y=plan.y, num_classes=dataset.num_classes, normalizer=IDENTITY, balance=plan.balance)
  else:
    data = TrainData.from_dataset(dataset, rows=rows, normalizer=normalizer, balance=plan.balance)
  models = train_models(
    data,
    spec.for_data(dataset),
    num_steps=num_steps,
    dynamics_window=None,
    desc=f"retrain {name}",
    checkpointer=checkpointer,
    progress=progress,
  )
  if plan.x is not None and plan.y is not None:  # test inputs are standardised as the resampled rows were
    frozen = models.normalizer
    models = dataclasses.replace(
      models, normalizer=FrozenInputs(frozen.part, normalizer) if isinstance(frozen, FrozenInputs) else normalizer
    )
  synthetic = plan.synthetic
  if plan.after_training is not None:
    models, synthetic = plan.after_training(models, normalizer)
  logits = models.logits(dataset.test.x)
  if plan.predict_offset is not None:
    logits = logits + plan.predict_offset.astype(np.float32)
  per_seed = evaluate_logits(dataset.test.y, logits, num_classes=dataset.num_classes, seeds=models.seeds)
  per_class = per_class_metrics(
    dataset.test.y, logits, num_classes=dataset.num_classes, class_names=dataset.class_names
  )
  return RetrainResult(
    name=name,
    num_examples=len(rows),
    num_steps=models.num_steps,
    models=models,
    per_seed=per_seed,
    remedy=remedy,
    synthetic=synthetic,
    per_class=per_class,
    test_logits=logits,
  )


FIGURES = ("roc.png", "pr.png", "confusion.png")  # what `write_test_figures` writes


def write_test_figures(result: RetrainResult, dataset: Dataset, folder, *, overwrite: bool = False) -> list[Path]:
  """`roc.png`, `pr.png` and `confusion.png` of a result's test predictions in
  `folder`: one-vs-rest curves per class from the class probabilities
  averaged over seeds, and the confusion matrix of their argmax."""
  from pruning.evaluation import softmax
  from pruning.plots import plot_confusion_matrix, plot_pr_curves, plot_roc_curves
  from pruning.runtime.atomic import make_folder

  if result.test_logits is None or dataset.test is None:
    raise UserError("this result holds no test predictions (read back from a finished run): retrain to draw them")
  folder = make_folder(Path(folder))
  probabilities = np.mean([softmax(logits) for logits in result.test_logits], axis=0)
  y, names = dataset.test.y, dataset.class_names
  seeds = list(result.per_seed["seed"]) if "seed" in result.per_seed else []
  shown = f"seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else "the seeds"
  subtitle = f"{result.name}: test split, class probabilities averaged over {shown}"
  return [
    plot_roc_curves(y, probabilities, folder / FIGURES[0], class_names=names, overwrite=overwrite, subtitle=subtitle),
    plot_pr_curves(y, probabilities, folder / FIGURES[1], class_names=names, overwrite=overwrite, subtitle=subtitle),
    plot_confusion_matrix(
      y,
      probabilities.argmax(-1),
      folder / FIGURES[2],
      num_classes=dataset.num_classes,
      class_names=names,
      overwrite=overwrite,
      subtitle=f"{result.name}: test split, argmax of the class probabilities averaged over {shown}",
    ),
  ]


__all__ = [
  "BUDGETS",
  "FIGURES",
  "REMEDIES",
  "RemedyOptions",
  "RetrainResult",
  "register_remedy",
  "retrain",
  "subset_rows",
  "write_test_figures",
]
