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
from pruning.runtime.progress import progress_bar
from pruning.scores import confidence as _confidence  # noqa: F401  (registers scores)
from pruning.scores import dynamics as _dynamics  # noqa: F401
from pruning.scores import el2n as _el2n  # noqa: F401
from pruning.scores import embedding as _embedding  # noqa: F401
from pruning.scores import grand as _grand  # noqa: F401
from pruning.scores import tracin_scores as _tracin_scores  # noqa: F401
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
      raise UserError(f"score {score.name!r} describes the whole proxy run and takes no @EPOCH: write {score.name}")
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


BLOCK_BYTES = 8 * 2**20


def block_rows(num_seeds: int, num_classes: int, *, block_bytes: int | None = None) -> int:
  """Rows scored together: their (S, rows, C) logits take about `block_bytes`
  (a whole number of forward batches, at least one)."""
  from pruning.training import EVAL_BATCH

  rows = (block_bytes or BLOCK_BYTES) // max(1, 4 * num_seeds * num_classes)
  return max(EVAL_BATCH, rows // EVAL_BATCH * EVAL_BATCH)


def compute_scores(
  models: TrainedModels,
  x: np.ndarray,
  y: np.ndarray,
  requests: Sequence,
  *,
  progress: bool = True,
  rows: np.ndarray | None = None,
  all_y: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
  """Computes each requested score: {column: (S, N) float32 array}.

  `rows` (with `all_y`, the whole split's labels) scores a shard: `x` and `y`
  are then the shard's inputs and labels (see `ScoringContext`).

  Every score is per example, so rows are scored a block at a time (see
  `block_rows`): memory holds one block's logits, never the (S, N, C) logits
  of the whole split, and features mapped from disk are read once per block.
  """
  requests = parse_requests(requests)
  y = np.asarray(y)
  n = len(y)
  if all_y is None:
    all_y = y
  positions = np.arange(n) if rows is None else np.asarray(rows)
  step = block_rows(len(models.seeds), models.num_classes)
  results = {r.column: np.empty((len(models.seeds), n), np.float32) for r in requests}
  blocks = range(0, n, step)
  # One block: the forward passes show their own bars; several: one bar over blocks.
  bar = progress_bar(blocks, desc="scoring blocks", unit="block", enabled=progress and len(blocks) > 1)
  for start in bar:
    stop = min(start + step, n)
    context = ScoringContext(
      models=models,
      x=x[start:stop] if stop - start < n else x,
      y=y[start:stop],
      progress=progress and len(blocks) == 1,
      rows=positions[start:stop],
      all_y=all_y,
    )
    # The long part is the forward pass per checkpoint, which shows its own bar.
    for request in requests:
      values = np.asarray(get_score(request.name).compute(context, request.epoch), np.float32)
      if values.shape != (len(models.seeds), stop - start):
        raise RuntimeError(f"score {request.name} returned shape {values.shape}")
      results[request.column][:, start:stop] = values
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
