"""Influence through the inverse Fisher, in LoGra's projected gradient space.

TracIn takes plain inner products of loss gradients. Influence functions
(Koh and Liang 2017) put the inverse Hessian between them, and the
projection-based methods that predict retraining best do so in a small
space: TRAK (Park et al. 2023) inverts `Phi^T Phi` of projected gradients, LoGra
(Choe et al. 2024, *What is your data worth to GPT?*) a damped Fisher of its
Kronecker-projected gradients. Here, at each TracIn checkpoint w_k:

    phi_k(z) = the projected per-example loss gradient (each layer's
               `P_in^T a` outer `P_out^T g`, flattened; `projection=k`)
    F_k      = (1/N) sum_i phi_k(z_i) phi_k(z_i)^T        (empirical Fisher, D x D)
    lambda_k = damping * trace(F_k) / D                  (relative to its mean eigenvalue)
    influence(z, z') = sum_k eta_k phi_k(z)^T (F_k + lambda_k I)^{-1} phi_k(z')

averaged over the proxy seeds. `damping` large gives projected TracIn divided
by lambda; small gives the undamped inverse, which TRAK uses (it fails where
N < D: the Fisher is singular).

Cost: two passes over the training data per checkpoint and seed (the Fisher,
then the products) instead of one, plus a D x D Cholesky factorisation in
float64 (D is about k^2 a layer).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx

from pruning.data.streaming import take_rows
from pruning.scores import ghost_products as products
from pruning.training import pad_rows, trimmed, width_batches


def flat_features(representation: dict) -> jax.Array:
  """(B, D) per-example gradients in the projected space, layers in the model's order:
  their inner products are the projected TracIn's (`ghost_products.inner_products`)."""
  parts = []
  for rep in representation.values():
    if products.OUTER in rep:
      a, g = rep[products.OUTER]
      parts.append((a[:, :, None] * g[:, None, :]).reshape(a.shape[0], -1))
    elif products.FLAT in rep:
      parts.append(rep[products.FLAT][0])
    else:  # embeddings are projected too: no row-by-id form is left
      raise ValueError("flat features need every layer projected")
  return jnp.concatenate(parts, axis=1)


@functools.lru_cache(maxsize=16)
def _features(graphdef: nnx.GraphDef, layers: tuple[str, ...] | None, output: str):
  """Per batch: `"features"` phi; `"gram"` `extra + Phi^T Phi`, the Fisher's running sum kept on
  the device (D^2 a row: only in the Fisher's pass); `"product"` `phi @ extra`, the influence on
  the solved test side."""

  def run(params, rest, x, y, projections, weights, extra):
    phi = flat_features(products.gradient_representations(graphdef, params, rest, x, y, projections, layers))
    phi = phi * weights[:, None]  # padded rows: no features, no share of the Fisher
    if output == "gram":
      return extra + phi.T @ phi
    return phi @ extra if output == "product" else phi

  return jax.jit(run, donate_argnums=(6,) if output == "gram" else ())


def projected_features(
  models, x, y, *, epoch: int, seed: int, projections: dict, layers=None, batch: int = 256
) -> np.ndarray:
  """(N, D) projected per-example loss gradients of one seed at one checkpoint, in the rows' order."""
  parts = list(_feature_batches(models, x, y, epoch, seed, projections, layers, batch))
  out = np.zeros((len(y), parts[0][1].shape[1] if parts else 0), np.float32)
  for part, phi in parts:
    out[part] = phi
  return out


def _feature_batches(models, x, y, epoch, seed, projections, layers, batch, output="features", extra=None):
  """(rows, `output` of those rows) for each batch, in `models.width_groups` order."""
  params, rest = jax.tree.map(lambda a: jnp.asarray(a[seed]), models.state_at(epoch))
  y = np.asarray(y, np.int32)
  fn = _features(models.graphdef, layers, output)
  for part, width in width_batches(models.width_groups(x), batch):
    inputs = trimmed(models.normalizer(take_rows(x, part)), width)
    weights = pad_rows(np.ones(len(part), np.float32), batch)
    value = fn(params, rest, pad_rows(inputs, batch), pad_rows(y[part], batch), projections, weights, extra)
    if output == "gram":
      extra = value  # the running sum, passed back in
    yield part, (value if output == "gram" else np.asarray(value)[: len(part)])


def preconditioned_influence(
  models,
  train_x,
  train_y,
  test_x,
  test_y,
  *,
  epochs,
  learning_rates,
  projections: dict,
  damping: float,
  layers=None,
  batch: int = 256,
  bar=None,
) -> np.ndarray:
  """(N, M) `sum_k eta_k phi_k(z_i)^T (F_k + lambda_k I)^{-1} phi_k(z'_j)`, averaged over seeds."""
  seeds = len(models.seeds)
  out = np.zeros((len(train_y), len(test_y)), np.float32)
  for epoch, rate in zip(epochs, learning_rates):
    for seed in range(seeds):
      feature_args = (epoch, seed, projections, layers, batch)
      test_phi = projected_features(
        models, test_x, test_y, epoch=epoch, seed=seed, projections=projections, layers=layers, batch=batch
      )
      start = jnp.zeros((test_phi.shape[1],) * 2, jnp.float32)
      sums = [total for _, total in _feature_batches(models, train_x, train_y, *feature_args, "gram", start)]
      fisher = np.asarray(sums[-1] if sums else start, np.float64) / max(len(train_y), 1)
      if not np.trace(fisher) > 0:  # every gradient zero at this checkpoint: no influence to add
        continue
      shift = damping * np.trace(fisher) / len(fisher)
      factor = scipy.linalg.cho_factor(fisher + shift * np.eye(len(fisher)), lower=True)
      solved = jnp.asarray(scipy.linalg.cho_solve(factor, test_phi.T.astype(np.float64)), jnp.float32)  # (D, M)
      for part, values in _feature_batches(models, train_x, train_y, *feature_args, "product", solved):
        out[part] += (rate / seeds) * values
        if bar is not None:
          bar.update(len(part))
  return out
