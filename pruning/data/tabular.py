"""`tabular:RATIO`: a seeded, imbalanced two-class table, generated offline.

scikit-learn's `make_classification` (random_state 0): 6,000 rows of 12
features (5 informative, 2 redundant, 1% of labels flipped), the classes in
the ratio RATIO : 1 (`tabular:20`: 95.2% majority, 4.8% minority). The
features are put on different scales (column j multiplied by 10^(j mod 4)),
as real tables are, which is what per-feature standardisation is for. A
fixed, seeded, stratified quarter is the test split, so the test split keeps
the imbalance (what AUROC and AUPRC are measured on). The home of SMOTE and
the other tabular remedies (`pruning.retraining.remedies`).
"""

from __future__ import annotations

import numpy as np

from pruning.data.dataset import Dataset, make_dataset, make_split
from pruning.data.sources import register_source
from pruning.errors import UserError

NUM_ROWS = 6000
NUM_FEATURES = 12
TEST_FRACTION = 0.25


def load_tabular(ratio: float, spec: str | None = None) -> Dataset:
  from sklearn.datasets import make_classification
  from sklearn.model_selection import train_test_split

  spec = spec or f"tabular:{ratio}"
  if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 1 <= ratio <= 1000:
    raise UserError(f"{spec}: the imbalance ratio must be a number from 1 to 1000, e.g. tabular:20")
  minority = 1.0 / (ratio + 1.0)
  x, y = make_classification(
    n_samples=NUM_ROWS,
    n_features=NUM_FEATURES,
    n_informative=5,
    n_redundant=2,
    weights=[1.0 - minority],
    flip_y=0.01,
    class_sep=1.0,
    random_state=0,
  )
  x = (x * 10.0 ** (np.arange(NUM_FEATURES) % 4)).astype(np.float32)
  ids = np.asarray([f"tabular-{i}" for i in range(len(y))], dtype=object)
  train_rows, test_rows = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, random_state=0, stratify=y)
  train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
  train = make_split(x[train_rows], y[train_rows], ids[train_rows], source=spec)
  test = make_split(x[test_rows], y[test_rows], ids[test_rows], source=spec)
  return make_dataset(spec, train, test, num_classes=2, class_names=["majority", "minority"])


@register_source(
  "tabular", argument="RATIO", description="a seeded two-class table with classes RATIO : 1 (no download)"
)
def _tabular_source(argument, *, spec, **options) -> Dataset:
  try:
    ratio = float(argument)
  except ValueError:
    raise UserError(f"{spec}: RATIO must be a number, e.g. tabular:20") from None
  return load_tabular(ratio, spec=spec)
