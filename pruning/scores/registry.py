"""The score registry: a score is a function registered by name.

A score takes a `ScoringContext` (trained proxies, the examples, cached
logits per checkpoint) and an epoch, and returns one value per seed and
example: an (S, N) array. `harder` says which end marks difficult examples,
so selection rules need not know each score.

A score also declares what it needs from proxy training, so training runs
only what the requested scores read: `at_checkpoint` (the state at an epoch,
`NAME@E`), `needs_dynamics` (the per-example dynamics recorder) or a
`training_hook` (a factory `hook(dataset, spec)` of a
`pruning.training.CheckpointableHook` whose `results()` land in
`TrainedModels.extras`), or `checkpoints(spec)`, epochs whose states it reads
(TracIn's). `provenance(spec, models)` adds to the manifest's
record of the column and `check(spec)` refuses or warns about a spec before
anything trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from pruning.manifest.schema import HARDER_HIGHER, HARDER_LOWER
from pruning.registry import Registry


@dataclasses.dataclass(frozen=True)
class Score:
  name: str
  compute: Callable[..., np.ndarray]
  harder: str
  description: str
  reference: str = ""
  at_checkpoint: bool = True
  needs_dynamics: bool = False
  training_hook: Callable[..., Any] | None = None
  provenance: Callable[..., dict] | None = None
  checks: Callable[..., None] | None = None
  checkpoints: Callable[..., list[int]] | None = None

  def check(self, spec) -> None:
    """Refuses (or warns about) a proxy spec this score cannot use, before training."""
    if self.checks is not None:
      self.checks(spec)


SCORES: Registry[Score] = Registry("score")


def register_score(
  name: str,
  *,
  harder: str,
  description: str,
  reference: str = "",
  at_checkpoint: bool = True,
  needs_dynamics: bool = False,
  training_hook: Callable[..., Any] | None = None,
  provenance: Callable[..., dict] | None = None,
  check: Callable[..., None] | None = None,
  checkpoints: Callable[..., list[int]] | None = None,
):
  """Decorator: registers `fn(context, epoch) -> (S, N) array` as score `name`.

  `at_checkpoint=False` marks scores of the whole training run (training
  dynamics, VoG), which take no `@EPOCH`. See the module docstring for what
  a score declares it needs from training.
  """
  if harder not in (HARDER_HIGHER, HARDER_LOWER):
    raise ValueError(f"harder must be {HARDER_HIGHER!r} or {HARDER_LOWER!r}")

  def decorate(fn):
    SCORES.register(
      name,
      Score(
        name=name,
        compute=fn,
        harder=harder,
        description=description,
        reference=reference,
        at_checkpoint=at_checkpoint,
        needs_dynamics=needs_dynamics,
        training_hook=training_hook,
        provenance=provenance,
        checks=check,
        checkpoints=checkpoints,
      ),
      description=description,
    )
    return fn

  return decorate


def get_score(name: str) -> Score:
  return SCORES.get(name)


def available_scores() -> dict[str, Score]:
  return dict(sorted(SCORES.items()))
