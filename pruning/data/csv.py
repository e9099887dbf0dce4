"""CSV tables: `csv:PATH`, read with pandas, laid out as Parquet tables are.

A label column (`--label-column`, default `label`), feature columns, and the
optional `example_id` and `split` (`train`/`test`) columns. Text feature
columns are refused unless `categorical="onehot"` (`--categorical onehot`),
which gives one 0/1 column per value. Rows with more or fewer fields than
the header are refused with their line number. The delimiter is the one of
`, ; tab |` the header uses most. `NA`, `null`, `None` and the other words
pandas reads as missing are missing values in number columns and text in
text columns.
"""

from __future__ import annotations

import csv
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
  header, delimiter = _read_header(path, spec)
  seen = set()
  for name in header:  # checked on the raw header: pandas renames a repeated `a` to `a.1`
    if name in seen:
      raise UserError(f"{spec}: column {name!r} appears more than once in the header: give every column its own name")
    seen.add(name)
  # Text stays text, even where a row holds only digits ("42" is a sentence too)
  # or a word pandas would read as missing ("NA", "null", "None"); elsewhere those mean missing.
  texts = [c for c in (text_column or ("text" if "text" in header else None), text_pair_column) if c is not None]
  as_text = {c: str for c in texts}
  try:
    frame = pd.read_csv(
      path,
      sep=delimiter,
      dtype={"example_id": str, "split": str, **as_text},
      keep_default_na=False,
      na_values={c: list(MISSING) for c in header if c not in texts},
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
  if frame.isna().to_numpy().any():  # short rows read as missing values: find one, with its line
    _refuse_short_rows(path, delimiter, len(header), spec)
  return frame_to_dataset(
    frame,
    label_column=label_column,
    spec=spec,
    categorical=categorical,
    text_column=text_column,
    text_pair_column=text_pair_column,
  )


# What pandas reads as missing by default (`keep_default_na`), for the columns that are not text.
MISSING = (
  "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
  "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
DELIMITERS = (",", ";", "\t", "|")


def _read_header(path: str, spec: str) -> tuple[list[str], str]:
  """The header's column names and the delimiter: the one of `, ; tab |` the header line uses most
  (a semicolon file from a European spreadsheet reads as one column otherwise)."""
  try:
    with open(path, encoding="utf-8", newline="") as handle:
      line = handle.readline()
  except UnicodeDecodeError:
    raise UserError(f"{spec}: not UTF-8 text: save the CSV as UTF-8") from None
  if not line.strip():
    raise UserError(f"{spec}: the file is empty: write a header line and rows")
  delimiter = max(DELIMITERS, key=lambda d: (line.count(d), d == ","))
  header = next(csv.reader([line.lstrip("\ufeff")], delimiter=delimiter))
  return header, delimiter


def _refuse_short_rows(path: str, delimiter: str, width: int, spec: str) -> None:
  with open(path, encoding="utf-8", newline="") as handle:
    for line, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
      if row and len(row) != width:
        raise UserError(
          f"{spec}: line {line} has {len(row)} fields, the header {width}: give every row the header's fields"
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
