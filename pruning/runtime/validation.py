"""Checks of values that come from users (YAML configs, the CLI, Python calls),
so a wrong type or an absurd size fails at once with one line, not deep inside
training or after it.

- `check_fields(instance, where)`: every field of a config dataclass has the
  type its annotation names (`int` is not `bool`, a `float` field takes ints,
  `X | None` takes None, `tuple[int, ...]` a tuple of ints).
- `check_seed(value, where)`: an integer seed in 0..2^32-1 (JAX's keys and
  NumPy's generators take 32 bits: 0 and 2^32 would be the same model).
- `available_memory()` and `check_fits(...)`: refuse work whose memory cannot
  fit on this machine before it starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing

from pruning.errors import UserError

MAX_SEED = 2**32 - 1


def _describe(hint) -> str:
  if hint is type(None):
    return "null"
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return " or ".join(_describe(a) for a in typing.get_args(hint))
  if origin is tuple:
    return f"a list of {_describe(typing.get_args(hint)[0])}"
  return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def matches(value, hint) -> bool:
  """Whether `value` has the type `hint` names (the shapes configs use)."""
  if hint is typing.Any or hint is object:
    return True
  if hint is type(None):
    return value is None
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(matches(value, a) for a in typing.get_args(hint))
  if origin is tuple:
    args = typing.get_args(hint)
    return isinstance(value, tuple) and all(matches(v, args[0]) for v in value)
  if origin is dict or hint is dict:
    return isinstance(value, dict)
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  if hint is str:
    return isinstance(value, str)
  if isinstance(hint, type):
    return isinstance(value, hint)
  return True


def check_fields(instance, where: str) -> None:
  """Raises a `UserError` naming the first field whose value has the wrong type."""
  hints = typing.get_type_hints(type(instance))
  for field in dataclasses.fields(instance):
    value = getattr(instance, field.name)
    if not matches(value, hints[field.name]):
      raise UserError(f"{where}: {field.name} must be {_describe(hints[field.name])}, got {value!r}")


def from_keywords(cls, options: dict, *, what: str, **given):
  """`cls(**given, **options)`: a keyword of `options` that is not one of
  the dataclass's fields (or is one of `given`) refused in one line that
  names the nearest field."""
  from pruning.errors import unknown_name_error

  known = [field.name for field in dataclasses.fields(cls) if field.name not in given]
  for name in options:
    if name not in known:
      raise unknown_name_error(what, name, known)
  return cls(**given, **options)


def check_seed(value, where: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
    raise UserError(f"{where}: seed {value!r} must be an integer in 0..{MAX_SEED}")
  return value


def available_memory() -> int:
  """Bytes this process may still use: the smaller of MemAvailable and a
  cgroup limit, else the machine's physical memory."""
  limits = []
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          limits.append(int(line.split()[1]) * 1024)
  except OSError:
    pass
  for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      with open(path) as handle:
        text = handle.read().strip()
      if text.isdigit() and int(text) < 2**60:
        limits.append(int(text))
    except OSError:
      pass
  if not limits:
    try:
      limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
      return 2**62
  return min(limits)


def format_bytes(size: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
    if size < 1024 or unit == "PiB":
      return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
    size /= 1024
  return f"{size:.1f} PiB"


def check_fits(needed: int, *, what: str, fix: str) -> None:
  """Refuses work that needs more memory than this machine has available."""
  available = available_memory()
  if needed > available:
    raise UserError(
      f"{what} needs about {format_bytes(needed)} of memory, more than the {format_bytes(available)} available: {fix}"
    )


# Seeds train side by side in one program: beyond this many, a study wants
# several jobs, not one program holding every model at once.
MAX_SEEDS = 1024


def parse_seeds(value, *, where: str) -> tuple[int, ...]:
  """`5` means seeds 0..4; a list gives the seeds themselves; `"0,3,7"` too."""
  if isinstance(value, bool):
    raise UserError(f"{where}: seeds must be a count or a list of integers, got {value!r}")
  if isinstance(value, int):
    if not 1 <= value <= MAX_SEEDS:
      raise UserError(f"{where}: the number of seeds must be at least 1 and at most {MAX_SEEDS}, got {value}")
    return tuple(range(value))
  if isinstance(value, str):
    text = value.strip()
    if text.isdigit():
      return parse_seeds(int(text), where=where)
    value = [v for v in re.split(r"[,\s]+", text) if v]
  if isinstance(value, (list, tuple)) and value:
    if len(value) > MAX_SEEDS:
      raise UserError(f"{where}: at most {MAX_SEEDS} seeds in one job, got {len(value)}")
    parsed: list[int] = []
    for item in value:
      try:
        if isinstance(item, (bool, float)):
          raise ValueError
        parsed.append(int(item))
      except (TypeError, ValueError):
        raise UserError(f"{where}: seeds must be integers, got {value!r}") from None
    seeds = tuple(parsed)
    if len(set(seeds)) != len(seeds):
      raise UserError(f"{where}: seeds must be distinct, got {list(seeds)}")
    for seed in seeds:
      check_seed(seed, where)
    return seeds
  raise UserError(f"{where}: seeds must be a count or a list of integers, got {value!r}")
