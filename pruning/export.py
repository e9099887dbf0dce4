"""Export of a subset: an id list, a Parquet table or an `.npz` of the kept examples.

The Parquet and `.npz` exports load back with `parquet:PATH` and `npz:PATH`
with the same ids, labels and features; both carry the test split too, so a
retraining job can evaluate on the same held-out data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.atomic import atomic_path, write_text
from pruning.data.dataset import Dataset
from pruning.data.parquet import FEATURE_SHAPE_KEY
from pruning.errors import unknown_name_error
from pruning.manifest import Manifest
from pruning.retraining import subset_rows

FORMATS = ("ids", "parquet", "npz")


def export_subset(subset: Manifest, dataset: Dataset, path: str | os.PathLike, *,
                  format: str, overwrite: bool = False) -> Path:
  """Writes the subset's examples to `path` in `format`, atomically."""
  if format not in FORMATS:
    raise unknown_name_error("export format", format, FORMATS)
  rows = subset_rows(dataset, subset)
  kept = dataset.train.take(rows)
  if format == "ids":
    return write_text(path, "".join(f"{i}\n" for i in kept.ids), overwrite=overwrite)
  if format == "npz":
    arrays = {"x": kept.x, "y": kept.y, "id": kept.ids.astype(str)}
    if dataset.test is not None:
      arrays.update(x_test=dataset.test.x, y_test=dataset.test.y, id_test=dataset.test.ids.astype(str))
    with atomic_path(path, overwrite=overwrite) as tmp:
      with open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)
  return _write_parquet(kept, dataset, path, overwrite=overwrite)


def _frame(split, name: str) -> pd.DataFrame:
  flat = split.x.reshape(len(split), -1)
  features = pd.DataFrame(flat, columns=[f"x{j}" for j in range(flat.shape[1])])
  meta = pd.DataFrame({"example_id": split.ids.astype(str), "label": split.y,
                       "split": [name] * len(split)})
  return pd.concat([meta, features], axis=1)


def _write_parquet(kept, dataset: Dataset, path, *, overwrite: bool) -> Path:
  import pyarrow as pa
  import pyarrow.parquet as pq

  frames = [_frame(kept, "train")]
  if dataset.test is not None:
    frames.append(_frame(dataset.test, "test"))
  table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
  metadata = dict(table.schema.metadata or {})
  metadata[FEATURE_SHAPE_KEY] = json.dumps(list(dataset.input_shape)).encode()
  table = table.replace_schema_metadata(metadata)
  with atomic_path(path, overwrite=overwrite) as tmp:
    pq.write_table(table, tmp)
  return Path(path)
