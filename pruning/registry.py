"""One way to extend the pipeline: a registry of named plugins per kind.

Models, scores, selection strategies, class rules, flagging methods, data
sources, export formats and scoring backends are each a `Registry`; adding one is one
registered object in one file:

    from pruning.selection import STRATEGIES

    @STRATEGIES.register("middle", description="keep the examples nearest the median difficulty")
    def middle(difficulty, k, *, n, rng, **options):
      return np.argsort(np.abs(difficulty - np.median(difficulty)), kind="stable")[:k]

A registry is a read-only mapping from name to plugin, so `name in REGISTRY`,
`REGISTRY[name]` and `list(REGISTRY)` work; `get` turns an unknown name into
a `UserError` that suggests the nearest known one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from pruning.errors import unknown_name_error

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
  """Plugins of one `kind` (e.g. "strategy"), by name, with a one-line description each."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}
    self._descriptions: dict[str, str] = {}

  def register(self, name: str, value: Any = None, *, description: str = "") -> Any:
    """Registers `value` as `name`; without a value, a decorator that registers what it decorates."""

    def add(item: T) -> T:
      if not isinstance(name, str) or not name:
        raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered")
      self._entries[name] = item
      self._descriptions[name] = description
      return item

    if value is None:
      return add
    return add(value)

  def unregister(self, name: str) -> T:
    """Removes `name` (a test's or a notebook's own plugin) and returns it."""
    self._descriptions.pop(name, None)
    return self._entries.pop(name)

  def get(self, name: str, default: Any = None) -> T:  # never returns the default: an unknown name is an error
    """The plugin `name`; an unknown name is a `UserError` naming the known ones."""
    if name not in self._entries:
      raise unknown_name_error(self.kind, name, self._entries)
    return self._entries[name]

  def descriptions(self) -> dict[str, str]:
    return dict(self._descriptions)

  def __getitem__(self, name: str) -> T:
    return self._entries[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"Registry({self.kind!r}: {', '.join(self._entries)})"

  def names(self) -> tuple[str, ...]:
    return tuple(self._entries)
