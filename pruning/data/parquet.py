"""Parquet tables: numeric feature columns plus a label column.

Optional columns: `example_id` (stable ids), `split` (`train`/`test` rows).
A `pruning.feature_shape` entry in the file's metadata restores image shapes
(as written by `pruning export --format parquet`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pruning.data.dataset import Dataset, make_dataset, make_split
from pruning.errors import UserError

FEATURE_SHAPE_KEY = b"pruning.feature_shape"
RESERVED_COLUMNS = ("example_id", "split", "index")


def read_parquet_table(path, *, missing: str, unreadable: str):
  """A pyarrow Table, or a `UserError` with the caller's message and fix.

  `missing` and `unreadable` are the messages for an absent file and for one
  that is not Parquet (truncated, corrupted, another format).
  """
  import pyarrow as pa
  import pyarrow.parquet as pq

  if not Path(path).is_file():
    raise UserError(missing)
  try:
    return pq.read_table(path)
  except (pa.ArrowException, OSError) as error:
    raise UserError(unreadable.format(error=type(error).__name__)) from None


def load_parquet(path: str, *, label_column: str = "label", spec: str | None = None,
                 stream: bool = False) -> Dataset:
  """The table at `path` as a dataset. With `stream`, features are read a row
  group at a time into a memory-mapped spill file (`pruning.data.streaming`)
  instead of into memory; the dataset is the same, fingerprint included."""
  spec = spec or f"parquet:{path}"
  if stream:
    return _load_streamed(path, label_column=label_column, spec=spec)
  table = read_parquet_table(
      path, missing=f"{spec}: no such file {path!r}: check the path",
      unreadable=f"{spec}: not a readable Parquet file ({{error}}): rewrite it with"
      " pandas.DataFrame.to_parquet")
  frame = table.to_pandas()
  if label_column not in frame.columns:
    raise UserError(
        f"{spec}: no label column {label_column!r} (columns: {', '.join(map(str, frame.columns[:8]))}"
        f"{'...' if len(frame.columns) > 8 else ''}): name it with --label-column"
    )
  labels = frame[label_column]
  class_names = None
  if labels.dtype.kind not in "biuf":
    class_names = sorted(labels.astype(str).unique())
    labels = labels.astype(str).map({name: i for i, name in enumerate(class_names)})
  features = [c for c in frame.columns if c != label_column and c not in RESERVED_COLUMNS]
  non_numeric = [c for c in features if frame[c].dtype.kind not in "biuf"]
  if non_numeric:
    raise UserError(
        f"{spec}: feature column {non_numeric[0]!r} is not numeric"
        f" ({frame[non_numeric[0]].dtype}): drop or encode it"
    )
  if not features:
    raise UserError(f"{spec}: no feature columns besides {label_column!r}: add numeric columns")
  x = frame[features].to_numpy()
  metadata = table.schema.metadata or {}
  if FEATURE_SHAPE_KEY in metadata:
    shape = tuple(json.loads(metadata[FEATURE_SHAPE_KEY]))
    if int(np.prod(shape)) == x.shape[1]:
      x = x.reshape((len(x),) + shape)
  ids = frame["example_id"].to_numpy() if "example_id" in frame.columns else None
  y = labels.to_numpy()
  if "split" in frame.columns:
    split = frame["split"].astype(str).to_numpy()
    unknown = sorted(set(split) - {"train", "test"})
    if unknown:
      raise UserError(
          f"{spec}: column 'split' has value {unknown[0]!r}: use 'train' or 'test'"
      )
    is_test = split == "test"
  else:
    is_test = np.zeros(len(y), dtype=bool)
  pick = lambda a, m: None if a is None else a[m]
  train = make_split(x[~is_test], y[~is_test], pick(ids, ~is_test), source=spec)
  test = None
  if is_test.any():
    test = make_split(x[is_test], y[is_test], pick(ids, is_test), source=f"{spec} (test rows)")
  return make_dataset(spec, train, test, class_names=class_names)


def _labels(labels, spec: str):
  """Numeric labels, and class names when the labels are strings."""
  if labels.dtype.kind in "biuf":
    return labels.to_numpy(), None
  class_names = sorted(labels.astype(str).unique())
  return labels.astype(str).map({name: i for i, name in enumerate(class_names)}).to_numpy(), class_names


def _load_streamed(path: str, *, label_column: str, spec: str) -> Dataset:
  import pyarrow as pa
  import pyarrow.parquet as pq

  from pruning.data.streaming import SpillFile
  from pruning.progress import progress_bar

  if not Path(path).is_file():
    raise UserError(f"{spec}: no such file {path!r}: check the path")
  try:
    parquet = pq.ParquetFile(path)
  except (pa.ArrowException, OSError) as error:
    raise UserError(f"{spec}: not a readable Parquet file ({type(error).__name__}): rewrite it with"
                    " pandas.DataFrame.to_parquet") from None
  schema = parquet.schema_arrow
  if label_column not in schema.names:
    raise UserError(f"{spec}: no label column {label_column!r} (columns: {', '.join(schema.names[:8])}"
                    f"{'...' if len(schema.names) > 8 else ''}): name it with --label-column")
  features = [c for c in schema.names if c != label_column and c not in RESERVED_COLUMNS]
  numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
  non_numeric = [c for c in features if not any(check(schema.field(c).type) for check in numeric)]
  if non_numeric:
    raise UserError(f"{spec}: feature column {non_numeric[0]!r} is not numeric"
                    f" ({schema.field(non_numeric[0]).type}): drop or encode it")
  if not features:
    raise UserError(f"{spec}: no feature columns besides {label_column!r}: add numeric columns")
  others = [c for c in (label_column, "example_id", "split") if c in schema.names]
  frame = parquet.read(columns=others).to_pandas()
  y, class_names = _labels(frame[label_column], spec)
  ids = frame["example_id"].to_numpy() if "example_id" in frame.columns else None
  is_test = np.zeros(len(y), dtype=bool)
  if "split" in frame.columns:
    split = frame["split"].astype(str).to_numpy()
    unknown = sorted(set(split) - {"train", "test"})
    if unknown:
      raise UserError(f"{spec}: column 'split' has value {unknown[0]!r}: use 'train' or 'test'")
    is_test = split == "test"
  metadata = schema.metadata or {}
  shape = (len(features),)
  if FEATURE_SHAPE_KEY in metadata:
    stored = tuple(json.loads(metadata[FEATURE_SHAPE_KEY]))
    shape = stored if int(np.prod(stored)) == len(features) else shape
  spill, test_rows, start = SpillFile(), [], 0
  for group in progress_bar(range(parquet.num_row_groups), desc=f"reading {Path(path).name}", unit="row group"):
    table = parquet.read_row_group(group, columns=features)
    x = np.stack([np.asarray(column.to_numpy(zero_copy_only=False), np.float64) for column in table.columns],
                 axis=1)
    mask = is_test[start:start + len(x)]
    spill.append(x[~mask])
    test_rows.append(x[mask].astype(np.float32))
    start += len(x)
  x_train = spill.finish(row_shape=shape)
  pick = lambda a, m: None if a is None else a[m]
  train = make_split(x_train, y[~is_test], pick(ids, ~is_test), source=spec)
  test = None
  if is_test.any():
    x_test = np.concatenate(test_rows).reshape((-1, *shape))
    test = make_split(x_test, y[is_test], pick(ids, is_test), source=f"{spec} (test rows)")
  return make_dataset(spec, train, test, class_names=class_names)
