"""Exact inner products of per-example gradients without per-example gradients over the data.

TracIn (`pruning.scores.tracin`) needs `<grad l(w, z_i), grad l(w, z'_j)>` for
every training example i and test example j. The structure the ghost norms
use (`pruning.scores.ghost_norms`) gives them layer by layer from one batched
backward pass of each side:

- a dense layer's per-example gradient is `sum_t a_t g_t^T` (inputs a,
  output gradients g, over positions t). With one position (an MLP),
  `<G_i, G'_j> = (a_i . a'_j)(g_i . g'_j)`, with a 1 appended to a for the
  bias: K + O multiplications a pair instead of K O, and no gradient is formed.
  With several positions (sequences, convolutions on im2col patches or one
  kernel offset at a time) each example's (K, O) gradient is formed a batch at
  a time (a convolution's `BLOCK_ROWS` examples at a time, in cache) and
  multiplied with the test set's;
- an embedding's per-example gradient has one row per token id, so
  `<G_i, G'_j> = sum_t g_it . G'_j[id_it]` with the test side's rows
  scattered by id once (repeated ids add up, as in the gradient);
- a normalisation's scale and bias gradients (`sum_t g_t x_hat_t`, `sum_t g_t`)
  are short vectors: formed per example.

Padding needs nothing: a padded position's output gradient is what the model
makes it (zero where the model masks it), as in the per-example gradient.

`projection=k` is the LoGra-style variant (Choe et al. 2024, *What is your
data worth to GPT?*): each layer's a and g are multiplied by fixed seeded
Gaussian matrices of k columns (k x k per layer instead of K x O; an
embedding's rows are projected the same way), so the inner products are taken
in a small space whose expectation is the exact one.
"""

from __future__ import annotations

import functools
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pruning.scores.ghost_norms import (
  RULES,
  ConvRule,
  flatten_positions,
  layer_class,
  output_gradients,
)

# One layer's per-example gradient representation is {kind: arrays}, with kind one of:
OUTER = "outer"  # (a (B, K), g (B, O)): the gradient is a g^T
FLAT = "flat"  # (v (B, D),): the gradient itself, flattened
TOKENS = "tokens"  # (ids (B, T), g (B, T, O)): an embedding's rows g_t at ids_t (exact only)
ROWS = "rows"  # (rows (U + 1, M, O),): the test side of TOKENS, summed by id slot (row U is zero)


# Rows per step when a convolution's per-example (K, O) gradient blocks are formed. The blocks and
# the copies that feed them (strided slices or patches of the input) are memory-bound on CPU: a
# batch of 256 at a time goes through memory, 16 at a time stays in cache (benchmarks/RESULTS.md,
# "TracIn"). A sequence's dense layers measured slower in steps, so they form theirs at once.
BLOCK_ROWS = 16


def in_row_chunks(fn, *arrays: jax.Array, rows: int | None = None) -> jax.Array:
  """`fn(*arrays)` for a function whose rows are independent, `rows` (`BLOCK_ROWS`) rows at a time in a loop."""
  rows = BLOCK_ROWS if rows is None else rows
  total = arrays[0].shape[0]
  if total <= rows:
    return fn(*arrays)
  steps = -(-total // rows)
  padded = [jnp.pad(a, [(0, steps * rows - total)] + [(0, 0)] * (a.ndim - 1)) for a in arrays]
  out = jax.lax.map(lambda parts: fn(*parts), tuple(a.reshape(steps, rows, *a.shape[1:]) for a in padded))
  return out.reshape(steps * rows, *out.shape[2:])[:total]


def _dense_blocks(a: jax.Array, g: jax.Array) -> list[jax.Array]:
  """[(B, K, O)]: each example's gradient `sum_t a_t g_t^T` from (B, T, K) inputs and (B, T, O) output gradients."""
  return [jnp.einsum("btk,bto->bko", a, g)]


def _patch_blocks(module, inputs: jax.Array, g: jax.Array) -> list[jax.Array]:
  """[(B, K, O)]: a convolution's per-example kernel gradient from the im2col patches of `inputs`."""
  return _dense_blocks(ConvRule.patches(module, {"inputs": inputs}), flatten_positions(g))


def _flat_blocks(blocks, bias: bool):
  """A FLAT representation from `blocks(inputs, g)` -> [(B, K_i, O) per-example blocks], with the
  bias gradient (g summed over positions) appended."""

  def flat(inputs, g):
    parts = [block.reshape(g.shape[0], -1) for block in blocks(inputs, g)]
    if bias:  # summed apart: a column of ones appended to the inputs would copy them all
      parts.append(jnp.sum(flatten_positions(g), axis=1))
    return jnp.concatenate(parts, axis=-1)

  return flat


def _dense(a: jax.Array, g: jax.Array, bias: bool, projection: dict | None) -> dict:
  """A dense layer's representation from (B, T, K) inputs and (B, T, O) output gradients."""
  if projection is not None:
    a = a @ projection["in"] if "in" in projection else a
    g = g @ projection["out"] if "out" in projection else g
  if a.shape[1] == 1:
    if bias:  # a 1 appended to a: the bias gradient is g, in the factored form
      a = jnp.concatenate([a, jnp.ones((*a.shape[:-1], 1), a.dtype)], axis=-1)
    return {OUTER: (a[:, 0], g[:, 0])}
  return {FLAT: (_flat_blocks(_dense_blocks, bias)(a, g),)}


def _layer(module, saved, g: jax.Array, projection: dict | None) -> dict:
  kind = layer_class(module)
  if kind is nnx.Linear:
    return _dense(saved, flatten_positions(g), module.use_bias, projection)
  if kind is nnx.Conv:
    if projection is not None or "patches" in saved:
      return _dense(ConvRule.patches(module, saved), flatten_positions(g), module.use_bias, projection)
    per_offset = ConvRule.per_offset(module, saved["inputs"], g)
    blocks = functools.partial(ConvRule.offset_blocks if per_offset else _patch_blocks, module)
    return {FLAT: (in_row_chunks(_flat_blocks(blocks, module.use_bias), saved["inputs"], g),)}
  if kind is nnx.Embed:
    g = flatten_positions(g)
    if projection is not None:  # a_t = P_in[id_t]: a dense layer on projected one-hot rows
      return _dense(projection["in"][saved], g, False, {"out": projection["out"]} if "out" in projection else None)
    return {TOKENS: (saved, g)}
  # LayerNorm, GroupNorm, eval-mode BatchNorm: scale and bias vectors
  g = flatten_positions(g)
  parts = []
  if getattr(module, "scale", None) is not None:
    parts.append(jnp.sum(g * saved, axis=1))
  if getattr(module, "bias", None) is not None:
    parts.append(jnp.sum(g, axis=1))
  return {FLAT: (jnp.concatenate(parts, axis=-1),)}


def gradient_representations(
  graphdef: nnx.GraphDef, params, rest, x, y, projections: dict, layers: tuple[str, ...] | None = None
) -> dict:
  """{layer path: one seed's per-example gradient representation} from one backward pass
  (`layers`: only the layers under these top-level attributes, e.g. ("head",))."""
  grads, saved, modules = output_gradients(graphdef, params, rest, x, y)
  return {
    path: _layer(modules[path], saved[path], g, projections.get(path))
    for path, g in grads.items()
    if layers is None or str(path[0]) in layers
  }


def token_ids(graphdef: nnx.GraphDef, params, rest, x, y) -> dict:
  """{embedding path: (B, T) ids it reads}: what the test side's id slots are built from."""
  _, saved, modules = output_gradients(graphdef, params, rest, x, y)
  return {path: saved[path] for path, module in modules.items() if layer_class(module) is nnx.Embed}


def as_test_side(representation: dict, slots: dict) -> dict:
  """The test set's representations, with each embedding's rows summed by id slot."""
  out = {}
  for path, rep in representation.items():
    if TOKENS in rep:
      ids, g = rep[TOKENS]
      table, size = slots[path]
      slot = table[ids]  # (M, T) in [0, size]; `size` is the slot of ids the test set never reads
      examples = jnp.broadcast_to(jnp.arange(g.shape[0])[:, None], slot.shape)
      rows = jnp.zeros((size + 1, g.shape[0], g.shape[-1]), g.dtype).at[slot, examples].add(g)
      out[path] = {ROWS: (rows.at[size].set(0.0),)}
    else:
      out[path] = rep
  return out


def inner_products(test: dict, train: dict, slots: dict) -> jax.Array:
  """(B, M) sums over layers of `<G_i, G'_j>` between training and test representations."""
  total = None
  for path, rep in train.items():
    other = test[path]
    if OUTER in rep:
      (a, g), (test_a, test_g) = rep[OUTER], other[OUTER]
      value = (a @ test_a.T) * (g @ test_g.T)
    elif FLAT in rep:
      value = rep[FLAT][0] @ other[FLAT][0].T
    else:  # TOKENS against ROWS: sum_t g_t . G'[id_t], one position at a time (no (B, T, M, O) gather)
      ids, g = rep[TOKENS]
      slot = slots[path][0][ids]
      (rows,) = other[ROWS]

      def add_position(acc, t, slot=slot, g=g, rows=rows):
        return acc + jnp.einsum("bo,bmo->bm", g[:, t], rows[slot[:, t]]), None

      value, _ = jax.lax.scan(add_position, jnp.zeros((g.shape[0], rows.shape[1]), g.dtype), jnp.arange(g.shape[1]))
    total = value if total is None else total + value
  assert total is not None
  return total


def id_slots(ids: np.ndarray, vocabulary: int) -> tuple[np.ndarray, int]:
  """(table, U): `table[v]` is id v's slot among the U ids in `ids`, U for ids not in it."""
  seen = np.unique(np.asarray(ids).ravel())
  table = np.full(vocabulary, len(seen), np.int32)
  table[seen] = np.arange(len(seen), dtype=np.int32)
  return table, len(seen)


def projection_matrices(graphdef: nnx.GraphDef, params, rest, x, y, k: int, *, seed: int = 0) -> dict:
  """{layer path: {"in": (K, k), "out": (O, k)}} fixed Gaussian projections N(0, 1/k) for every
  dense, convolution and embedding layer, seeded by `seed` and the layer's path (so every
  checkpoint and seed projects alike). A side of k or fewer features is kept as it is."""
  grads = jax.eval_shape(lambda: output_gradients(graphdef, params, rest, x, y)[0])
  modules = tapped_layers(graphdef, params, rest)
  out: dict = {}
  for path, g in grads.items():
    module = modules[path]
    kind = layer_class(module)
    if kind not in (nnx.Linear, nnx.Conv, nnx.Embed):
      continue
    if kind is nnx.Embed:
      inputs = module.num_embeddings
    elif kind is nnx.Conv:
      inputs = math.prod(module.kernel_size) * module.in_features
    else:
      inputs = module.in_features
    sides = {"in": inputs, "out": g.shape[-1]}
    matrices = {}
    for side, size in sides.items():
      if kind is nnx.Embed and side == "in" and size <= k:  # few ids (positions): one-hot rows, exact
        matrices[side] = jnp.eye(size, dtype=jnp.float32)
      elif size > k or (kind is nnx.Embed and side == "in"):
        digest = hashlib.sha256(f"{seed}/{'/'.join(map(str, path))}/{side}".encode()).digest()
        key = jax.random.key(int.from_bytes(digest[:4], "little"))
        matrices[side] = jax.random.normal(key, (size, k), jnp.float32) / math.sqrt(k)
    if matrices:
      out[path] = matrices
  return out


def tapped_layers(graphdef, params, rest) -> dict:
  """{path: layer} of the model's layers with a ghost rule (their static settings: sizes, bias)."""
  model = nnx.merge(graphdef, params, rest)
  return {path: module for path, module in nnx.iter_modules(model) if type(module) in RULES}
