"""Data sources by name: `digits`, `mnist1d`, `npz:PATH`, `parquet:PATH`, `tfds:NAME[/CONFIG][:VERSION]:SPLIT`.

A dataset spec is `NAME` or `NAME:ARGUMENT`. Each source registers itself in
`DATA_SOURCES` from its own module with a loader
`load(argument, *, spec, label_column, data_dir, test_split, stream) -> Dataset`
(it takes the options it uses and ignores the rest) and the form of its
argument (`PATH`; None for a built-in dataset that takes none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pruning.errors import UserError, unknown_name_error
from pruning.registry import Registry


@dataclasses.dataclass(frozen=True)
class DataSource:
  load: Callable[..., Any]
  argument: str | None = None  # e.g. "PATH"; None: the source takes no argument

  def usage(self, name: str) -> str:
    return name if self.argument is None else f"{name}:{self.argument}"


class DataSources(Registry[DataSource]):
  def usages(self) -> list[str]:
    return [source.usage(name) for name, source in self.items()]


DATA_SOURCES = DataSources("data source")


def register_source(name: str, *, argument: str | None = None, description: str = ""):
  """Decorator: registers `load(argument, *, spec, **options) -> Dataset` as the source `name`."""

  def decorate(load):
    DATA_SOURCES.register(name, DataSource(load, argument), description=description)
    return load

  return decorate


def load_source(spec: str, **options):
  """The dataset a spec names, untransformed."""
  if not isinstance(spec, str) or not spec.strip():
    raise UserError(f"empty dataset spec: give one of {', '.join(DATA_SOURCES.usages())}")
  name, sep, argument = spec.partition(":")
  source = DATA_SOURCES._entries.get(name)
  if source is None or (source.argument is None and sep):
    raise unknown_name_error("dataset spec", spec, DATA_SOURCES.usages())
  if source.argument is not None and not argument:
    raise UserError(f"dataset spec {spec!r} has no {source.argument.lower()} after '{name}:'")
  return source.load(argument if source.argument is not None else None, spec=spec, **options)
