"""The proxy trainings flagging needs: out-of-fold probabilities, and AUM with threshold samples.

Both train the proxies a manifest records (`ProxySpec`: model, options,
epochs, seeds), on parts of the training split or with changed labels, and
are deterministic for the same spec and seed.
"""

from __future__ import annotations

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError
from pruning.evaluation import softmax
from pruning.training import ModelSpec, TrainData, train_models


def _train_as_proxies(dataset: Dataset, spec: ModelSpec, labels: np.ndarray, *, num_classes: int, rows=None, **options):
  """The spec's proxies on the training split (its `rows`) with `labels`."""
  data = TrainData.from_dataset(dataset, labels=labels, num_classes=num_classes, rows=rows)
  return train_models(data, spec.for_data(dataset), **options)


def out_of_fold_probabilities(
  dataset: Dataset, spec, *, folds: int = 5, seed: int = 0, progress: bool = True, test: bool = False
):
  """(N, C) probabilities of every training example from proxies that never
  saw it: a stratified K-fold split, each fold's S seeds trained on the other
  folds for the spec's epochs, their softmax averaged over seeds. With
  `test`, also the test split's (M, C) probabilities, averaged over every
  fold's proxies (none saw it): returns the pair."""
  from sklearn.model_selection import StratifiedKFold

  y = dataset.train.y
  counts = np.bincount(y, minlength=dataset.num_classes)
  if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 20:
    raise UserError(f"folds {folds!r} must be a whole number from 2 to 20 (cleanlab's default is 5)")
  if counts[counts > 0].min() < folds:
    thin = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
    raise UserError(
      f"class {thin} has {int(counts[thin])} examples, fewer than the {folds} folds: use fewer folds (--folds)"
    )
  probabilities = np.zeros((len(y), dataset.num_classes))
  test_split = dataset.test if test else None
  test_probabilities = None if test_split is None else np.zeros((len(test_split), dataset.num_classes))
  splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
  for k, (train_rows, held_rows) in enumerate(splitter.split(np.zeros(len(y)), y)):
    models = _train_as_proxies(
      dataset,
      spec,
      y,
      num_classes=dataset.num_classes,
      rows=np.sort(train_rows),
      dynamics_window=None,
      desc=f"fold {k + 1}/{folds}",
      progress=progress,
    )
    held = np.sort(held_rows)
    probabilities[held] = softmax(models.logits(dataset.train.x[held])).mean(axis=0)
    if test_probabilities is not None and test_split is not None:
      test_probabilities += softmax(models.logits(test_split.x)).mean(axis=0) / folds
  return (probabilities, test_probabilities) if test else probabilities


def aum_with_threshold_samples(dataset: Dataset, spec, *, seed: int = 0, progress: bool = True):
  """Pleiss et al.'s threshold samples (NeurIPS 2020): every example's AUM,
  and the AUM of threshold samples, examples moved to a fake class C.

  Two trainings with C + 1 classes, each moving a disjoint random
  N / (C + 1) of the examples to the fake class (they cannot be learned as
  it, so their AUM is that of a mislabeled example); each example's AUM is
  taken from the training where it kept its label. Returns (aum (N,),
  threshold_aum (M,)), both averaged over the spec's seeds.
  """
  y = dataset.train.y
  n, num_classes = len(y), dataset.num_classes
  rng = np.random.default_rng(seed)
  order = rng.permutation(n)
  size = max(1, n // (num_classes + 1))
  groups = [np.sort(order[:size]), np.sort(order[size : 2 * size])]
  aum = np.full(n, np.nan)
  threshold_aum = []
  for k, moved in enumerate(groups):
    labels = y.copy()
    labels[moved] = num_classes
    models = _train_as_proxies(
      dataset, spec, labels, num_classes=num_classes + 1, desc=f"threshold samples {k + 1}/2", progress=progress
    )
    values = np.asarray(models.dynamics["aum"]).mean(axis=0)
    kept = np.setdiff1d(np.arange(n), moved)
    fill = kept[np.isnan(aum[kept])]
    aum[fill] = values[fill]
    threshold_aum.append(values[moved])
  return aum, np.concatenate(threshold_aum)
