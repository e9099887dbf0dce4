"""CSV cells that a spreadsheet would run as formulas (CSV or formula injection).

A cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage return is read
by Excel, LibreOffice and Google Sheets as a formula, so a sentence such as
`=HYPERLINK("http://...", "click")` in a text column becomes a live link or
worse in the relabelling table people open there. OWASP's advice, followed
here: prefix such cells with a single quote, which spreadsheets show as text.
"""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def is_formula_like(value) -> bool:
  return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
  """`frame` with every text cell that starts like a formula prefixed by `'` (numbers are left alone)."""
  out = frame.copy()
  for column in out.columns:
    if _holds_text(out[column]):
      out[column] = [f"'{v}" if is_formula_like(v) else v for v in out[column].tolist()]
  return out


def count_formula_like(frame: pd.DataFrame) -> int:
  """How many text cells of `frame` a spreadsheet would read as formulas."""
  return sum(
    sum(is_formula_like(v) for v in frame[column].tolist()) for column in frame.columns if _holds_text(frame[column])
  )


def _holds_text(column: pd.Series) -> bool:
  return column.dtype == object or pd.api.types.is_string_dtype(column.dtype)
