"""Training-dynamics scores, read from what the proxy training loop recorded.

Definitions and sources are in `pruning.training.recorder`. These scores describe the
whole proxy run, so they take no `@EPOCH`.
"""

from __future__ import annotations

import warnings

import numpy as np

from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, HARDER_LOWER, register_score
from pruning.training import DEFAULT_WINDOW


def _recorded(name: str):
  def compute(context: ScoringContext, epoch: int | None) -> np.ndarray:
    return context.recorded(context.models.dynamics[name])

  return compute


def _window_check(spec) -> None:
  epochs, window = spec.training.epochs, spec.dynamics_window
  if epochs < window:
    warnings.warn(
      f"dynamic_uncertainty: {epochs} proxy epochs are fewer than its window of {window}, so one window spans all"
      f" {epochs}; train longer or set proxy.dynamics_window (--dynamics-window)",
      UserWarning,
      stacklevel=5,  # the caller that built the ProxySpec
    )


def _window_provenance(spec, models) -> dict:
  window = int(models.extras.get("dynamics_window", DEFAULT_WINDOW))
  return {"window": window, "window_used": min(window, spec.training.epochs)}


register_score(
  "forgetting",
  harder=HARDER_HIGHER,
  at_checkpoint=False,
  needs_dynamics=True,
  description="forgetting events during proxy training (never learned = number of visits)",
  reference="Toneva et al., ICLR 2019",
)(_recorded("forgetting"))
register_score(
  "aum",
  harder=HARDER_LOWER,
  at_checkpoint=False,
  needs_dynamics=True,
  description="area under the margin: mean of z_y - max_{i!=y} z_i over training",
  reference="Pleiss et al., NeurIPS 2020",
)(_recorded("aum"))
register_score(
  "dynamic_uncertainty",
  harder=HARDER_HIGHER,
  at_checkpoint=False,
  needs_dynamics=True,
  description="mean over J-epoch windows of the std of p_y",
  reference="He et al., CVPR 2024",
  provenance=_window_provenance,
  check=_window_check,
)(_recorded("dynamic_uncertainty"))
register_score(
  "mean_loss",
  harder=HARDER_HIGHER,
  at_checkpoint=False,
  needs_dynamics=True,
  description="mean training loss over proxy training",
)(_recorded("mean_loss"))
