"""Per-example scores by name, and `compute_scores` to run a list of them.

Registered here: `el2n`, `grand`, `grand_last_layer`, `loss`, `confidence`,
`margin`, `entropy` (at a checkpoint) and `forgetting`, `aum`, `dynamic_uncertainty`, `mean_loss`
(training dynamics, recorded during proxy training). A request
`NAME` scores at the end of proxy training; `NAME@E` scores at the checkpoint
of epoch E (0 = initialisation) and is stored as column `NAME_epochE`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from pruning.errors import UserError
from pruning.scores import confidence as _confidence  # noqa: F401  (registers scores)
from pruning.scores import dynamics as _dynamics  # noqa: F401
from pruning.scores import el2n as _el2n  # noqa: F401
from pruning.scores import grand as _grand  # noqa: F401
from pruning.scores import vog as _vog  # noqa: F401
from pruning.scores.context import ScoringContext
from pruning.scores.registry import (
    HARDER_HIGHER,
    HARDER_LOWER,
    Score,
    available_scores,
    get_score,
    register_score,
)
from pruning.training import TrainedModels

_REQUEST = re.compile(r"^([a-z][a-z0-9_]*)(?:@(\d+))?$")


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
  """A score and the checkpoint to compute it at (None: end of training)."""

  name: str
  epoch: int | None = None

  @classmethod
  def parse(cls, text) -> ScoreRequest:
    if isinstance(text, ScoreRequest):
      return text
    match = _REQUEST.match(str(text).strip())
    if not match:
      raise UserError(f"bad score request {text!r}: write NAME or NAME@EPOCH, e.g. el2n@5")
    score = get_score(match.group(1))
    if match.group(2) and not score.at_checkpoint:
      raise UserError(
          f"score {score.name!r} describes the whole proxy run and takes no @EPOCH: write {score.name}")
    return cls(match.group(1), int(match.group(2)) if match.group(2) else None)

  @property
  def column(self) -> str:
    return self.name if self.epoch is None else f"{self.name}_epoch{self.epoch}"


def parse_requests(requests: Sequence) -> list[ScoreRequest]:
  parsed = [ScoreRequest.parse(r) for r in requests]
  if not parsed:
    raise UserError("no scores requested: ask for at least one, e.g. --score el2n")
  columns = [r.column for r in parsed]
  if len(set(columns)) != len(columns):
    raise UserError(f"score requested twice ({columns}): list each once")
  return parsed


def checkpoint_epochs(requests: Sequence[ScoreRequest]) -> list[int]:
  """The epochs whose checkpoints the requests need."""
  return sorted({r.epoch for r in requests if r.epoch is not None})


def compute_scores(
    models: TrainedModels, x: np.ndarray, y: np.ndarray, requests: Sequence, *, progress: bool = True,
    rows: np.ndarray | None = None, all_y: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
  """Computes each requested score: {column: (S, N) float32 array}.

  `rows` (with `all_y`, the whole split's labels) scores a shard: `x` and `y`
  are then the shard's inputs and labels (see `ScoringContext`).
  """
  context = ScoringContext(models=models, x=x, y=np.asarray(y), progress=progress, rows=rows, all_y=all_y)
  results = {}
  # The long part is the forward pass per checkpoint, which shows its own bar.
  for request in parse_requests(requests):
    values = np.asarray(get_score(request.name).compute(context, request.epoch), np.float32)
    if values.shape != (len(models.seeds), len(y)):
      raise RuntimeError(f"score {request.name} returned shape {values.shape}")
    results[request.column] = values
  return results


__all__ = [
    "HARDER_HIGHER",
    "HARDER_LOWER",
    "Score",
    "ScoreRequest",
    "ScoringContext",
    "available_scores",
    "checkpoint_epochs",
    "compute_scores",
    "get_score",
    "parse_requests",
    "register_score",
]
