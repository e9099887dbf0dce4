"""CSV tables: `csv:PATH`, read with pandas, laid out as Parquet tables are.

A label column (`--label-column`, default `label`), feature columns, and the
optional `example_id` and `split` (`train`/`test`) columns. Text feature
columns are refused unless `categorical="onehot"` (`--categorical onehot`),
which gives one 0/1 column per value. Rows with more or fewer fields than
the header are refused with their line number.
"""

from __future__ import annotations

from pathlib import Path

from pruning.data.dataset import Dataset
from pruning.data.parquet import check_columns, frame_to_dataset
from pruning.data.sources import register_source
from pruning.errors import UserError

CATEGORICAL = ("refuse", "onehot")


def load_csv(
  path: str,
  *,
  label_column: str = "label",
  categorical: str = "refuse",
  spec: str | None = None,
  text_column: str | None = None,
  text_pair_column: str | None = None,
) -> Dataset:
  import pandas as pd

  spec = spec or f"csv:{path}"
  if categorical not in CATEGORICAL:
    raise UserError(f"categorical {categorical!r} must be 'refuse' or 'onehot'")
  if not Path(path).is_file():
    raise UserError(f"{spec}: no such file {path!r}: check the path")
  try:
    # The header names the columns; ids and splits stay text, labels and features are parsed.
    # Text columns stay text, even where a row holds only digits ("42" is a sentence too);
    # an empty field is read as an empty string, which the text checks refuse by row.
    as_text = {c: str for c in (text_column or "text", text_pair_column) if c is not None}
    frame = pd.read_csv(
      path,
      dtype={"example_id": str, "split": str, **as_text},
      keep_default_na=text_column is None,
      on_bad_lines="error",
      encoding="utf-8",
    )
  except pd.errors.ParserError as error:
    where = str(error).strip().splitlines()[-1][:160]
    raise UserError(f"{spec}: a row does not match the header ({where}): give every row the header's fields") from None
  except pd.errors.EmptyDataError:
    raise UserError(f"{spec}: the file is empty: write a header line and rows") from None
  except UnicodeDecodeError:
    raise UserError(f"{spec}: not UTF-8 text: save the CSV as UTF-8") from None
  check_columns(list(frame.columns), spec)
  duplicated = [c for c in frame.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in frame.columns]
  if duplicated:  # pandas renames a repeated header `a` to `a.1`
    raise UserError(f"{spec}: column {str(duplicated[0]).rsplit('.', 1)[0]!r} appears more than once in the header")
  return frame_to_dataset(
    frame,
    label_column=label_column,
    spec=spec,
    categorical=categorical,
    text_column=text_column,
    text_pair_column=text_pair_column,
  )


@register_source("csv", argument="PATH", description="a CSV table: a label column and feature columns")
def _csv_source(
  path, *, spec, label_column="label", categorical="refuse", text_column=None, text_pair_column=None, **options
) -> Dataset:
  return load_csv(
    path,
    label_column=label_column,
    categorical=categorical,
    spec=spec,
    text_column=text_column,
    text_pair_column=text_pair_column,
  )
