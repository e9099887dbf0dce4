"""scikit-learn's bundled handwritten digits: 1,797 8x8 grey images, 10 classes."""

from __future__ import annotations

import numpy as np

from pruning.data.dataset import Dataset, make_dataset, make_split
from pruning.data.sources import register_source

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits(spec: str = "digits") -> Dataset:
  """Digits as (N, 8, 8, 1) images with a fixed, seeded, stratified test split.

  Example ids are `digits-<row>` with the row in scikit-learn's array, so they
  stay the same whatever the split.
  """
  from sklearn.datasets import load_digits as sk_load_digits
  from sklearn.model_selection import train_test_split

  bunch = sk_load_digits()
  x = bunch.images.astype(np.float32)[..., None]
  y = bunch.target.astype(np.int64)
  ids = np.asarray([f"digits-{i}" for i in range(len(y))], dtype=object)
  rows = np.arange(len(y))
  train_rows, test_rows = train_test_split(rows, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
  train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
  train = make_split(x[train_rows], y[train_rows], ids[train_rows], source=spec)
  test = make_split(x[test_rows], y[test_rows], ids[test_rows], source=spec)
  return make_dataset(spec, train, test, num_classes=10, class_names=[str(c) for c in range(10)])


@register_source("digits", description="scikit-learn's 8x8 handwritten digits, bundled (no download)")
def _digits_source(argument, *, spec, **options) -> Dataset:
  return load_digits(spec)
