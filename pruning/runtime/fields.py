"""Each option's flag and help beside its default and check.

A config dataclass field declared with `option(default, help=...)` carries
its command-line flag (`--label-column` for `label_column`, unless `flag`
names another), `help` (a string, or a callable for text read from a
registry when the parser is built), `metavar` and `choices`. The CLI builds
its flags from them (`pruning.cli.flag_groups.add_fields`), so no option's
default, name or help is written twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, *, help: Any, flag: str | None = None, metavar: str | None = None, choices: Any = None) -> Any:
  """A dataclass field with a default and what its command-line flag says."""
  return dataclasses.field(
    default=default, metadata={"help": help, "flag": flag, "metavar": metavar, "choices": choices}
  )


def flag_of(field: dataclasses.Field) -> str:
  """The flag of a field: `--label-column` for `label_column`, or the one its metadata names."""
  return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def dest_of(field: dataclasses.Field) -> str:
  """Where argparse stores the field's flag (`--data-seed`: `data_seed`)."""
  return flag_of(field)[2:].replace("-", "_")


def choices_text(names) -> str:
  names = list(names)
  return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def described(registry) -> str:
  return "; ".join(f"{name}: {text}" for name, text in registry.descriptions().items())


__all__ = ["choices_text", "described", "dest_of", "flag_of", "option"]
