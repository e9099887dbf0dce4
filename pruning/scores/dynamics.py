"""Training-dynamics scores, read from what the proxy training loop recorded.

Definitions and sources are in `pruning.training.recorder`. These scores describe the
whole proxy run, so they take no `@EPOCH`.
"""

from __future__ import annotations

import numpy as np

from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, HARDER_LOWER, register_score


def _recorded(name: str):
  def compute(context: ScoringContext, epoch: int | None) -> np.ndarray:
    return context.recorded(context.models.dynamics[name])

  return compute


register_score(
  "forgetting",
  harder=HARDER_HIGHER,
  at_checkpoint=False,
  description="forgetting events during proxy training (never learned = number of visits)",
  reference="Toneva et al., ICLR 2019",
)(_recorded("forgetting"))
register_score(
  "aum",
  harder=HARDER_LOWER,
  at_checkpoint=False,
  description="area under the margin: mean of z_y - max_{i!=y} z_i over training",
  reference="Pleiss et al., NeurIPS 2020",
)(_recorded("aum"))
register_score(
  "dynamic_uncertainty",
  harder=HARDER_HIGHER,
  at_checkpoint=False,
  description="mean over J-epoch windows of the std of p_y",
  reference="He et al., CVPR 2024",
)(_recorded("dynamic_uncertainty"))
register_score(
  "mean_loss", harder=HARDER_HIGHER, at_checkpoint=False, description="mean training loss over proxy training"
)(_recorded("mean_loss"))
