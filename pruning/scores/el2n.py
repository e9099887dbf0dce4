"""EL2N: the L2 norm of the error vector, `||softmax(z) - e_y||_2`.

Paul, Ganguli, Dziugaite, "Deep Learning on a Data Diet", NeurIPS 2021.
Computed per seed; the manifest keeps each seed's value, their mean (the
paper's score) and their standard deviation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, register_score


@jax.jit
def el2n_from_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """`||softmax(logits) - one_hot(labels)||_2` over the last axis."""
  probs = jax.nn.softmax(logits, axis=-1)
  error = probs - jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)
  return jnp.sqrt(jnp.sum(error * error, axis=-1))


@register_score(
  "el2n",
  harder=HARDER_HIGHER,
  description="L2 norm of softmax(z) - one_hot(y)",
  reference="Paul et al., NeurIPS 2021",
)
def el2n(context: ScoringContext, epoch: int | None) -> np.ndarray:
  return np.asarray(el2n_from_logits(context.logits(epoch), context.y))
