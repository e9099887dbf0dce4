"""The score registry: a score is a function registered by name.

A score takes a `ScoringContext` (trained proxies, the examples, cached
logits per checkpoint) and an epoch, and returns one value per seed and
example: an (S, N) array. `harder` says which end marks difficult examples,
so selection rules need not know each score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pruning.errors import unknown_name_error

HARDER_HIGHER = "higher"
HARDER_LOWER = "lower"


@dataclasses.dataclass(frozen=True)
class Score:
  name: str
  compute: Callable[..., np.ndarray]
  harder: str
  description: str
  reference: str = ""
  at_checkpoint: bool = True


_REGISTRY: dict[str, Score] = {}


def register_score(name: str, *, harder: str, description: str, reference: str = "", at_checkpoint: bool = True):
  """Decorator: registers `fn(context, epoch) -> (S, N) array` as score `name`.

  `at_checkpoint=False` marks scores of the whole training run (training
  dynamics), which take no `@EPOCH`.
  """
  if harder not in (HARDER_HIGHER, HARDER_LOWER):
    raise ValueError(f"harder must be {HARDER_HIGHER!r} or {HARDER_LOWER!r}")

  def decorate(fn):
    if name in _REGISTRY:
      raise ValueError(f"score {name!r} is already registered")
    _REGISTRY[name] = Score(
      name=name, compute=fn, harder=harder, description=description, reference=reference, at_checkpoint=at_checkpoint
    )
    return fn

  return decorate


def get_score(name: str) -> Score:
  if name not in _REGISTRY:
    raise unknown_name_error("score", name, _REGISTRY)
  return _REGISTRY[name]


def available_scores() -> dict[str, Score]:
  return dict(sorted(_REGISTRY.items()))
