"""Parquet tables: numeric feature columns plus a label column.

Optional columns: `example_id` (stable ids), `split` (`train`/`test` rows).
A `pruning.feature_shape` entry in the file's metadata restores image shapes
(as written by `pruning export --format parquet`).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from pruning.data.dataset import Dataset, make_dataset, make_split
from pruning.data.sources import register_source
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
    table = pq.read_table(path)
    table.schema.names, table.schema.metadata  # noqa: B018 (damaged names fail to decode here)
    return table
  except (pa.ArrowException, OSError, ValueError) as error:
    raise UserError(unreadable.format(error=type(error).__name__)) from None


def feature_shape(metadata: dict, num_features: int, spec: str) -> tuple[int, ...]:
  """The example shape the file's `pruning.feature_shape` metadata records
  (a JSON list of positive integers whose product is the number of feature
  columns), else `(num_features,)`."""
  raw = metadata.get(FEATURE_SHAPE_KEY)
  if raw is None:
    return (num_features,)
  try:
    shape = json.loads(raw)
  except (ValueError, UnicodeDecodeError):
    shape = None
  if (
    not isinstance(shape, list)
    or not shape
    or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
  ):
    raise UserError(
      f"{spec}: the file's {FEATURE_SHAPE_KEY.decode()} metadata is not a list of positive"
      f" integers ({raw[:40]!r}): remove it or write the file again"
    )
  if int(np.prod(shape, dtype=object)) != num_features:
    return (num_features,)  # columns were added or dropped since: keep them flat
  return tuple(shape)


UNNAMED = re.compile(r"(Unnamed: \d+|__index_level_\d+__|)$")
# Column names that say "identifier": as a feature a row number or customer id
# lets a model memorise rows, and scores then measure that.
ID_LIKE = re.compile(r"(?i)(id|.*[_ -]id|index|idx|row|row_?num(ber)?|.*_key)$")


def check_columns(names, spec: str) -> None:
  """Refuses repeated column names (pandas and Arrow disagree on which one
  wins) and unnamed ones (a pandas index written with the table)."""
  seen = set()
  for name in names:
    if name in seen:
      raise UserError(f"{spec}: column {name!r} appears more than once: give every column its own name")
    if UNNAMED.fullmatch(str(name)):
      raise UserError(
        f"{spec}: column {str(name)!r} has no name (a pandas index saved with the table?): write the table with"
        " index=False, or drop the column"
      )
    seen.add(name)


def warn_id_like_features(frame, features, spec: str) -> None:
  """One warning per feature column that is named like an identifier and holds
  a distinct whole number per row."""
  for column in features:
    values = frame[column]
    if ID_LIKE.fullmatch(str(column)) and values.dtype.kind in "iu" and values.is_unique and len(values) > 2:
      warnings.warn(
        f"{spec}: column {str(column)!r} looks like an identifier (a distinct whole number per row) and is used as"
        f" a feature: name it example_id if it is one, or drop it",
        UserWarning,
        stacklevel=3,
      )


def table_to_pandas(table, *, damaged: str):
  """`table.to_pandas()`, or a `UserError` (message `damaged`) where the
  file's bytes decode to broken pandas metadata or invalid UTF-8."""
  import pyarrow as pa

  try:
    table.validate(full=True)  # invalid UTF-8 in a string column fails here, not in a later pandas call
    return table.to_pandas()
  except (pa.ArrowException, ValueError, KeyError, TypeError, IndexError):
    raise UserError(damaged) from None


def load_parquet(
  path: str,
  *,
  label_column: str = "label",
  spec: str | None = None,
  stream: bool = False,
  text_column: str | None = None,
  text_pair_column: str | None = None,
) -> Dataset:
  """The table at `path` as a dataset. With `stream`, features are read a row
  group at a time into a memory-mapped spill file (`pruning.data.streaming`)
  instead of into memory; the dataset is the same, fingerprint included.
  A text column (`text`, or `text_column`) makes it text data (`pruning.data.text`)."""
  spec = spec or f"parquet:{path}"
  if stream and text_column is None:
    # Text is small next to images: a table with a text column is read whole.
    return _load_streamed(path, label_column=label_column, spec=spec)
  table = read_parquet_table(
    path,
    missing=f"{spec}: no such file {path!r}: check the path",
    unreadable=f"{spec}: not a readable Parquet file ({{error}}): rewrite it with pandas.DataFrame.to_parquet",
  )
  check_columns(table.schema.names, spec)
  frame = table_to_pandas(table, damaged=str(_damaged(spec, "damaged metadata or text")))
  return frame_to_dataset(
    frame,
    label_column=label_column,
    spec=spec,
    metadata=table.schema.metadata or {},
    text_column=text_column,
    text_pair_column=text_pair_column,
  )


def frame_to_dataset(
  frame,
  *,
  label_column: str,
  spec: str,
  metadata: dict | None = None,
  categorical: str = "refuse",
  text_column: str | None = None,
  text_pair_column: str | None = None,
) -> Dataset:
  """A dataset from a table: `label_column`, numeric feature columns, and the
  optional `example_id` and `split` columns. Text feature columns are refused
  or, with `categorical="onehot"`, one-hot encoded (one 0/1 column per value,
  named `COLUMN=VALUE`, in sorted order).

  A table with a text column (`text`, or the `text_column` given, plus an
  optional `text_pair_column`) is text data: those columns are the features
  and any other column is ignored (`pruning.data.text`)."""
  import pandas as pd

  from pruning.data.text import make_text_split, text_columns

  if label_column not in frame.columns:
    raise UserError(
      f"{spec}: no label column {label_column!r} (columns: {', '.join(map(str, frame.columns[:8]))}"
      f"{'...' if len(frame.columns) > 8 else ''}): name it with --label-column"
    )
  y, class_names = _labels(frame[label_column], spec, label_column)
  texts = text_columns(frame.columns, text_column, text_pair_column, spec=spec)
  if texts:
    ids = _ids(frame, spec)
    is_test = _test_rows(frame, spec)
    columns = [frame[c].to_numpy(dtype=object) for c in texts]
    parts = []
    for mask, where in ((~is_test, spec), (is_test, f"{spec} (test rows)")):
      if mask.any() or where == spec:
        parts.append(
          make_text_split(
            [c[mask] for c in columns], y[mask], None if ids is None else ids[mask], names=texts, source=where
          )
        )
    return make_dataset(
      spec, parts[0], parts[1] if len(parts) > 1 else None, class_names=class_names, text_columns=texts
    )
  features = [c for c in frame.columns if c != label_column and c not in RESERVED_COLUMNS]
  non_numeric = [c for c in features if frame[c].dtype.kind not in "biuf"]
  if non_numeric and categorical == "onehot":
    encoded = [
      pd.get_dummies(frame[c].astype(str), prefix=str(c), prefix_sep="=", dtype=np.float32).reindex(
        columns=sorted(f"{c}={v}" for v in frame[c].astype(str).unique())
      )
      for c in non_numeric
    ]
    frame = pd.concat([frame.drop(columns=non_numeric), *encoded], axis=1)
    features = [c for c in frame.columns if c != label_column and c not in RESERVED_COLUMNS]
  elif non_numeric:
    column = non_numeric[0]
    values = frame[column].dropna().astype(str)
    sentences = len(values) and values.str.contains(" ").mean() > 0.5 and values.nunique() > 0.5 * len(values)
    if sentences:  # free text, not categories: a text column under another name
      raise UserError(
        f"{spec}: column {column!r} holds sentences, not numbers: if it is the text to classify, name it with"
        f" --text-column {column} (or drop it)"
      )
    raise UserError(
      f"{spec}: feature column {column!r} is not numeric ({frame[column].dtype}): drop it,"
      " encode it, or one-hot encode category columns with --categorical onehot"
    )
  if not features:
    raise UserError(f"{spec}: no feature columns besides {label_column!r}: add numeric columns")
  warn_id_like_features(frame, features, spec)
  x = frame[features].to_numpy()
  shape = feature_shape(metadata or {}, len(features), spec)
  if shape != (len(features),):
    x = x.reshape((len(x),) + shape)
  ids = _ids(frame, spec)
  is_test = _test_rows(frame, spec)
  pick = lambda a, m: None if a is None else a[m]
  train = make_split(x[~is_test], y[~is_test], pick(ids, ~is_test), source=spec)
  test = None
  if is_test.any():
    test = make_split(x[is_test], y[is_test], pick(ids, is_test), source=f"{spec} (test rows)")
  named = tuple(map(str, features)) if shape == (len(features),) else ()
  return make_dataset(spec, train, test, class_names=class_names, feature_columns=named)


def _labels(labels, spec: str, label_column: str = "label"):
  """Numeric labels, and class names when the labels are strings."""
  if labels.isna().any():
    raise UserError(
      f"{spec}: label column {label_column!r} has {int(labels.isna().sum())} missing values:"
      " drop those rows or give them a label"
    )
  if labels.dtype.kind in "biuf":
    return labels.to_numpy(), None
  class_names = sorted(labels.astype(str).unique())
  return labels.astype(str).map({name: i for i, name in enumerate(class_names)}).to_numpy(), class_names


def _test_rows(frame, spec: str) -> np.ndarray:
  """Which rows the `split` column puts in the test split (none without the column)."""
  if "split" not in frame.columns:
    return np.zeros(len(frame), dtype=bool)
  split = frame["split"].astype(str).to_numpy()
  unknown = sorted(set(split) - {"train", "test"})
  if unknown:
    raise UserError(f"{spec}: column 'split' has value {unknown[0]!r}: use 'train' or 'test'")
  return split == "test"


def _ids(frame, spec: str):
  if "example_id" not in frame.columns:
    return None
  ids = frame["example_id"]
  if ids.isna().any():
    raise UserError(f"{spec}: column 'example_id' has missing values: give every row an id, or drop the column")
  return ids.to_numpy()


def _damaged(spec: str, error) -> UserError:
  reason = error if isinstance(error, str) else type(error).__name__
  return UserError(
    f"{spec}: not a readable Parquet file ({reason}; truncated or corrupted?):"
    " rewrite it with pandas.DataFrame.to_parquet"
  )


def _load_streamed(path: str, *, label_column: str, spec: str) -> Dataset:
  import pyarrow as pa
  import pyarrow.parquet as pq

  from pruning.data.streaming import SpillFile
  from pruning.runtime.progress import progress_bar

  if not Path(path).is_file():
    raise UserError(f"{spec}: no such file {path!r}: check the path")
  try:
    parquet = pq.ParquetFile(path)
    parquet.schema_arrow.names, parquet.schema_arrow.metadata  # noqa: B018 (damaged names fail here)
  except (pa.ArrowException, OSError, ValueError) as error:
    raise UserError(
      f"{spec}: not a readable Parquet file ({type(error).__name__}): rewrite it with pandas.DataFrame.to_parquet"
    ) from None
  schema = parquet.schema_arrow
  check_columns(schema.names, spec)
  if "text" in schema.names:  # text data (`pruning.data.text`) is read whole
    return load_parquet(path, label_column=label_column, spec=spec, stream=False)
  if label_column not in schema.names:
    raise UserError(
      f"{spec}: no label column {label_column!r} (columns: {', '.join(schema.names[:8])}"
      f"{'...' if len(schema.names) > 8 else ''}): name it with --label-column"
    )
  features = [c for c in schema.names if c != label_column and c not in RESERVED_COLUMNS]
  numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
  non_numeric = [c for c in features if not any(check(schema.field(c).type) for check in numeric)]
  if non_numeric:
    raise UserError(
      f"{spec}: feature column {non_numeric[0]!r} is not numeric"
      f" ({schema.field(non_numeric[0]).type}): drop or encode it"
    )
  if not features:
    raise UserError(f"{spec}: no feature columns besides {label_column!r}: add numeric columns")
  others = [c for c in (label_column, "example_id", "split") if c in schema.names]
  try:
    frame = table_to_pandas(parquet.read(columns=others), damaged=str(_damaged(spec, "damaged metadata or text")))
  except (pa.ArrowException, OSError) as error:
    raise _damaged(spec, error) from None
  y, class_names = _labels(frame[label_column], spec, label_column)
  ids = _ids(frame, spec)
  is_test = _test_rows(frame, spec)
  shape = feature_shape(schema.metadata or {}, len(features), spec)
  spill, test_rows, start = SpillFile(), [], 0
  for group in progress_bar(range(parquet.num_row_groups), desc=f"reading {Path(path).name}", unit="row group"):
    try:
      table = parquet.read_row_group(group, columns=features)
    except (pa.ArrowException, OSError) as error:
      spill.discard()
      raise _damaged(spec, error) from None
    x = np.stack([np.asarray(column.to_numpy(zero_copy_only=False), np.float64) for column in table.columns], axis=1)
    mask = is_test[start : start + len(x)]
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
  named = tuple(map(str, features)) if shape == (len(features),) else ()
  return make_dataset(spec, train, test, class_names=class_names, feature_columns=named)


@register_source("parquet", argument="PATH", description="a table: a label column and feature columns")
def _parquet_source(
  path, *, spec, label_column="label", stream=False, text_column=None, text_pair_column=None, **options
) -> Dataset:
  return load_parquet(
    path,
    label_column=label_column,
    spec=spec,
    stream=stream,
    text_column=text_column,
    text_pair_column=text_pair_column,
  )
