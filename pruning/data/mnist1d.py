"""MNIST-1D (Greydanus, 2020): 1-D signals of 40 points, 10 classes, generated offline."""

from __future__ import annotations

import dataclasses

import numpy as np

from pruning.data.dataset import Dataset, make_dataset, make_split
from pruning.data.sources import register_source


def load_mnist1d(spec: str = "mnist1d") -> Dataset:
  """The MNIST-1D generator's default dataset: 4,000 train and 1,000 test signals.

  Generated with the package's default arguments (seed 42), never downloaded.
  The generator seeds NumPy's global random state; it is restored afterwards.
  """
  from mnist1d.data import get_dataset_args
  from mnist1d.data import make_dataset as generate

  saved_state = np.random.get_state()
  try:
    data = generate(get_dataset_args())
  finally:
    np.random.set_state(saved_state)
  n_train, n_test = len(data["y"]), len(data["y_test"])
  train = make_split(data["x"], data["y"], [f"mnist1d-train-{i}" for i in range(n_train)], source=spec)
  test = make_split(data["x_test"], data["y_test"], [f"mnist1d-test-{i}" for i in range(n_test)], source=spec)
  dataset = make_dataset(spec, train, test, num_classes=10, class_names=[str(c) for c in range(10)])
  # A one-channel signal, not a table: its positions share one scale, so
  # `auto` means one mean and std (per channel), as for images.
  return dataclasses.replace(dataset, normalize="global")


@register_source("mnist1d", description="the MNIST-1D generator's default signals (generated, no download)")
def _mnist1d_source(argument, *, spec, **options) -> Dataset:
  return load_mnist1d(spec)
