"""Single-forward-pass baselines: loss, confidence, margin, entropy.

With p = softmax(z): loss `-log p_y`; confidence `p_y`; margin
`p_y - max_{i != y} p_i`; entropy `-sum_i p_i log p_i`. Common baselines in
DeepCore and the CCS code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, HARDER_LOWER, register_score


@jax.jit
def _log_probs_and_true(logits, labels):
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  is_true = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  return log_probs, jnp.sum(jnp.where(is_true, log_probs, 0.0), axis=-1)


@register_score("loss", harder=HARDER_HIGHER, description="cross-entropy -log p_y")
def loss(context: ScoringContext, epoch: int | None) -> np.ndarray:
  _, true = _log_probs_and_true(context.logits(epoch), context.y)
  return np.asarray(-true)


@register_score("confidence", harder=HARDER_LOWER, description="probability of the true class p_y")
def confidence(context: ScoringContext, epoch: int | None) -> np.ndarray:
  _, true = _log_probs_and_true(context.logits(epoch), context.y)
  return np.asarray(jnp.exp(true))


@jax.jit
def margin_from_logits(logits, labels):
  probs = jax.nn.softmax(logits, axis=-1)
  is_true = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  true = jnp.sum(jnp.where(is_true, probs, 0.0), axis=-1)
  other = jnp.max(jnp.where(is_true, -jnp.inf, probs), axis=-1)
  return true - other


@register_score("margin", harder=HARDER_LOWER, description="p_y - max_{i != y} p_i")
def margin(context: ScoringContext, epoch: int | None) -> np.ndarray:
  return np.asarray(margin_from_logits(context.logits(epoch), context.y))


@jax.jit
def entropy_from_logits(logits):
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


@register_score("entropy", harder=HARDER_HIGHER, description="entropy of the predicted distribution")
def entropy(context: ScoringContext, epoch: int | None) -> np.ndarray:
  return np.asarray(entropy_from_logits(context.logits(epoch)))
