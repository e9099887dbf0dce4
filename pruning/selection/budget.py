"""How many examples to keep: `--keep` as a fraction in (0, 1] or a count."""

from __future__ import annotations

import math

from pruning.errors import UserError


def parse_keep(value) -> float | int:
  """`0.5`, `"50%"` and `1` are fractions (1 keeps everything); `700` is a count.

  A whole number of 2 or more is a count; a number in (0, 1] is a fraction.
  """
  text = str(value).strip()
  try:
    if text.endswith("%"):
      number = float(text[:-1]) / 100
      is_whole = False
    elif isinstance(value, bool):
      raise ValueError
    elif isinstance(value, int) or text.lstrip("+-").isdigit():
      number = int(text)
      is_whole = True
    else:
      number = float(text)
      is_whole = False
  except ValueError:
    raise UserError(f"--keep {value!r} is not a number: give a fraction like 0.5 or a count like 700") from None
  if not math.isfinite(number) or number <= 0:
    raise UserError(f"--keep {value!r} must be positive: give a fraction in (0, 1] or a count >= 2")
  if is_whole and number >= 2:
    return int(number)
  if number > 1:
    raise UserError(f"--keep {value!r} is neither a fraction in (0, 1] nor a whole count: give e.g. 0.5 or 700")
  return float(number)


def resolve_keep(keep, num_examples: int) -> int:
  """The number of examples kept out of `num_examples` (at least one)."""
  keep = parse_keep(keep)
  if isinstance(keep, int):
    if keep > num_examples:
      raise UserError(
        f"--keep {keep} is more than the {num_examples} examples available: keep at most {num_examples} (or a fraction)"
      )
    return keep
  return max(1, min(num_examples, int(math.floor(keep * num_examples + 0.5))))
