"""Export formats that write one file: an id list, an `.npz`, a Parquet table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.data.dataset import Dataset, Split
from pruning.data.parquet import FEATURE_SHAPE_KEY
from pruning.errors import UserError
from pruning.export.registry import check_file_output, register_format
from pruning.runtime.atomic import atomic_path, write_text
from pruning.runtime.spreadsheet import count_formula_like


@register_format("ids", check_output=check_file_output, repeats_ids=True, description="one example id per line")
def write_ids(kept: Split, dataset: Dataset, subset, path, *, overwrite: bool, **_) -> Path:
  broken = next((str(i) for i in kept.ids if any(c in str(i) for c in "\n\r")), None)
  if broken is not None:
    raise UserError(
      f"example id {broken!r} holds a line break, so a one-per-line id list cannot hold it:"
      " export as parquet or npz instead"
    )
  return write_text(path, "".join(f"{i}\n" for i in kept.ids), overwrite=overwrite)


@register_format("parquet", check_output=check_file_output, description="a table that loads back with parquet:PATH")
def write_parquet(kept: Split, dataset: Dataset, subset, path, *, overwrite: bool, **_) -> Path:
  import pyarrow as pa
  import pyarrow.parquet as pq

  table = pa.Table.from_pandas(_table(kept, dataset), preserve_index=False)
  if not dataset.is_text:
    metadata = dict(table.schema.metadata or {})
    metadata[FEATURE_SHAPE_KEY] = json.dumps(list(dataset.input_shape)).encode()
    table = table.replace_schema_metadata(metadata)
  with atomic_path(path, overwrite=overwrite) as tmp:
    pq.write_table(table, tmp)
  return Path(path)


@register_format("csv", check_output=check_file_output, description="a CSV table that loads back with csv:PATH")
def write_csv(kept: Split, dataset: Dataset, subset, path, *, overwrite: bool, **_) -> Path:
  if not dataset.is_text and len(dataset.input_shape) > 1:
    raise UserError(
      f"{dataset.spec} has examples of shape {dataset.input_shape}, which a CSV row flattens and cannot restore:"
      " export as parquet or npz instead"
    )
  table = _table(kept, dataset)
  formulas = count_formula_like(table)
  if formulas:
    # Kept verbatim, so `csv:PATH` loads back the same text; said, because people open CSVs in spreadsheets.
    warnings.warn(
      f"{formulas} text cell{'s' if formulas > 1 else ''} of {path} begin with = + - or @, which a spreadsheet"
      " runs as a formula: open the file as data (or export as parquet), not by double-clicking it",
      UserWarning,
      stacklevel=2,
    )
  with atomic_path(path, overwrite=overwrite) as tmp:
    table.to_csv(tmp, index=False)
  return Path(path)


def _table(kept: Split, dataset: Dataset) -> pd.DataFrame:
  frames = [_frame(kept, "train", dataset)]
  if dataset.test is not None:
    frames.append(_frame(dataset.test, "test", dataset))
  return pd.concat(frames, ignore_index=True)


@register_format("npz", check_output=check_file_output, description="arrays that load back with npz:PATH")
def write_npz(kept: Split, dataset: Dataset, subset, path, *, overwrite: bool, **_) -> Path:
  if dataset.is_text:
    raise UserError(f"{dataset.spec} is text, which an .npz of numbers cannot keep: export as parquet, csv or tfds")
  arrays = {"x": kept.x, "y": kept.y, "id": kept.ids.astype(str)}
  if dataset.test is not None:
    arrays.update(x_test=dataset.test.x, y_test=dataset.test.y, id_test=dataset.test.ids.astype(str))
  with atomic_path(path, overwrite=overwrite) as tmp:
    with open(tmp, "wb") as handle:
      np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]  # numpy's stubs take **arrays for its flags
  return Path(path)


def _frame(split, name: str, dataset: Dataset) -> pd.DataFrame:
  meta = pd.DataFrame({"example_id": split.ids.astype(str), "label": split.y, "split": [name] * len(split)})
  if dataset.is_text:  # the text itself, under its own column names, not token ids
    texts = split.text.reshape(len(split), -1)
    return pd.concat([meta, pd.DataFrame(texts, columns=list(dataset.text_columns))], axis=1)
  flat = split.x.reshape(len(split), -1)
  names = list(dataset.feature_columns)
  if len(names) != flat.shape[1] or set(names) & set(meta.columns):
    names = [f"x{j}" for j in range(flat.shape[1])]
  features = pd.DataFrame(flat, columns=names)
  return pd.concat([meta, features], axis=1)
