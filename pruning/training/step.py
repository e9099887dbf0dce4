"""One optimisation step of every seed, as a jitted program, and the public builder of a step.

`build_train_step` returns f(params, rest, opt_state, inputs, y_device, idx, w)
-> (params, opt_state, losses, stats): one jitted step mapped over the stacked
seeds, or, where `plan_micro_batches` says the step's temporaries would not fit
under glibc's mmap threshold on CPU, a gradient call per micro-batch summed
into one update (the same step up to float rounding, 2x faster for the zoo's
CNN at batch 512).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pruning.runtime.call_size import rows_per_call
from pruning.training import mesh as sharding
from pruning.training.config import TrainConfig


def adjusted(logits, logit_offset: tuple[float, ...] | None):
  """Logits plus a constant offset per class (no offset: the logits themselves, the same program)."""
  return logits if logit_offset is None else logits + jnp.asarray(logit_offset, logits.dtype)


@functools.lru_cache(maxsize=64)
def train_step_programs(
  graphdef: nnx.GraphDef,
  config: TrainConfig,
  num_steps: int,
  gathered: bool = False,
  seed_map: str = "vmap",
  logit_offset: tuple[float, ...] | None = None,
):
  """One jitted optimisation step of every seed, mapped over the stacked states
  by `seed_map` (`pruning.training.mesh.map_over_seeds`).

  The step reads its batch from the whole split on the device (`x_all[idx]`),
  or, `gathered`, takes each seed's batch of inputs gathered on the host (for
  features mapped from disk, which never go to the device whole).

  `logit_offset` (one float per class) is added to the logits inside the
  loss only (Menon et al.'s logit-adjusted loss); predictions are untouched.

  Steps run from a Python loop rather than a `lax.scan`: XLA's CPU backend
  runs convolutions inside a while loop about 10x slower than at top level
  (measured here: 0.84 s against 0.08 s for a CNN step at batch 64).
  """

  optimizer = config.make_optimizer(num_steps)

  def loss_fn(params, rest, x, y, w):
    logits = nnx.merge(graphdef, params, rest)(x)
    losses = optax.softmax_cross_entropy_with_integer_labels(adjusted(logits, logit_offset), y)
    return jnp.sum(losses * w) / jnp.maximum(jnp.sum(w), 1.0), (logits, losses)

  def one_seed(params, rest, opt_state, x_all, y_all, idx, w):
    y = y_all[idx]
    (loss, (logits, losses)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, rest, x_all if gathered else x_all[idx], y, w
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, example_stats(logits, y, losses)

  step = jax.jit(
    sharding.map_over_seeds(one_seed, (0, 0, 0, 0 if gathered else None, None, 0, 0), seed_map), donate_argnums=(0, 2)
  )
  return step, jax.jit(jax.vmap(optimizer.init))


@functools.lru_cache(maxsize=64)
def _micro_grad_fn(
  graphdef: nnx.GraphDef,
  gathered: bool,
  seed_map: str,
  seeds_per_call: int | None = None,
  logit_offset: tuple[float, ...] | None = None,
):
  """One micro-batch's share of a step's gradient, added to `acc`.

  The loss is the step's weighted mean, so its denominator is the whole
  batch's weight (`total`, one per seed): summed over the micro-batches, the
  gradients are the step's gradient. With `seeds_per_call`, a call covers
  only seeds `first_seed` onwards (`idx`, `w` and gathered inputs are theirs;
  `params`, `rest`, `acc` and `total` stay stacked over all seeds), so one
  compiled program serves every block of seeds.
  """

  def one_seed(params, rest, acc, x_all, y_all, idx, w, total):
    def loss_fn(params):
      logits = nnx.merge(graphdef, params, rest)(x_all if gathered else x_all[idx])
      losses = optax.softmax_cross_entropy_with_integer_labels(adjusted(logits, logit_offset), y_all[idx])
      return jnp.sum(losses * w) / total, (logits, losses)

    (loss, (logits, losses)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return jax.tree.map(jnp.add, acc, grads), loss, example_stats(logits, y_all[idx], losses)

  in_axes = (0, 0, 0, 0 if gathered else None, None, 0, 0, 0)
  mapped = sharding.map_over_seeds(one_seed, in_axes, seed_map)
  if seeds_per_call is None:
    return jax.jit(mapped, donate_argnums=(2,))

  def block(params, rest, acc, x_all, y_all, idx, w, total, first_seed):
    take = lambda a: jax.lax.dynamic_slice_in_dim(a, first_seed, seeds_per_call)
    part, loss, stats = mapped(
      jax.tree.map(take, params), jax.tree.map(take, rest), jax.tree.map(take, acc), x_all, y_all, idx, w, take(total)
    )
    acc = jax.tree.map(lambda a, b: jax.lax.dynamic_update_slice_in_dim(a, b, first_seed, 0), acc, part)
    return acc, loss, stats

  return jax.jit(block, donate_argnums=(2,))


@functools.lru_cache(maxsize=64)
def _update_fn(config: TrainConfig, num_steps: int):
  """The optax update of every seed from an accumulated gradient."""
  optimizer = config.make_optimizer(num_steps)

  def one_seed(params, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.jit(jax.vmap(one_seed), donate_argnums=(0, 1))


@jax.jit
def _zeros_like(tree):
  return jax.tree.map(jnp.zeros_like, tree)


def _has_batch_statistics(rest) -> bool:
  return any(issubclass(getattr(v, "type", type(v)), nnx.BatchStat) for _, v in nnx.to_flat_state(rest))


_MICRO_ROWS: dict = {}  # decided once per program and shapes: probing compiles


# Fewer rows per call than this for all seeds together: give each seed its own calls.
_MIN_ROWS_FOR_ALL_SEEDS = 32


@dataclasses.dataclass(frozen=True)
class MicroBatches:
  """How a step is split: `rows` per call, for `seeds` seeds at a time (None: all)."""

  rows: int
  seeds: int | None = None


def plan_micro_batches(
  graphdef: nnx.GraphDef, params, rest, inputs, y_device, *, batch: int, gathered: bool, seed_map: str, mesh
) -> MicroBatches | None:
  """How a step's gradient is summed over micro-batches, or None for one call.

  On CPU, a call whose temporaries exceed glibc's mmap threshold faults them
  in again on every call (`pruning.runtime.call_size`); a CNN step at batch 512 ran
  1.9x faster as 8 gradient calls of 64 rows and one update. The rows divide
  the batch. When all seeds together fit fewer than 32 rows per call and the
  seeds share one device, each seed gets its own calls (10 CNN seeds at batch
  128: 3,900 ex/s in one call, 6,600 per seed). Models with batch statistics
  (whose outputs depend on the batch) are never split.
  """
  if _has_batch_statistics(rest):
    return None
  num_seeds = jax.tree.leaves(params)[0].shape[0]
  key = (graphdef, gathered, seed_map, batch, mesh, num_seeds, inputs.shape[2 if gathered else 1 :], inputs.dtype.name)
  if key not in _MICRO_ROWS:
    _MICRO_ROWS[key] = _split_step(
      graphdef,
      params,
      rest,
      inputs,
      y_device,
      batch=batch,
      gathered=gathered,
      seed_map=seed_map,
      mesh=mesh,
      num_seeds=num_seeds,
    )
  return _MICRO_ROWS[key]


def _split_step(
  graphdef, params, rest, inputs, y_device, *, batch, gathered, seed_map, mesh, num_seeds
) -> MicroBatches | None:
  # One device: probe one seed's program and scale by the seeds (their temporaries add up).
  alone = num_seeds > 1 and mesh is None
  seeds = 1 if alone else num_seeds

  def args_for(rows):
    spec = sharding.batch_spec(mesh, rows, per_seed=True)
    zeros = np.zeros((seeds, rows), np.int32)
    x = sharding.place(np.zeros((seeds, rows, *inputs.shape[2:]), inputs.dtype), spec) if gathered else inputs
    args = (
      params,
      rest,
      _zeros_like(params),
      x,
      y_device,
      sharding.place(zeros, spec),
      sharding.place(zeros.astype(np.float32), spec),
      sharding.place_seeds(np.ones(num_seeds, np.float32), mesh),
    )
    return (*args, np.int32(0)) if alone else args

  grad = _micro_grad_fn(graphdef, gathered, seed_map, 1 if alone else None)
  scale = num_seeds if alone else 1
  fits = rows_per_call(grad, args_for, most=batch * scale, over_budget=0)
  if fits == 0:  # over budget even at the probe's rows: faults whatever the split
    return None
  all_seeds_fit = fits // scale  # rows per call for all seeds together
  if all_seeds_fit >= batch:
    return None
  if not alone or all_seeds_fit >= min(batch, _MIN_ROWS_FOR_ALL_SEEDS):
    rows = _largest_divisor(batch, all_seeds_fit)
    return None if rows is None else MicroBatches(rows=rows)
  rows = _largest_divisor(batch, fits)
  return None if rows is None else MicroBatches(rows=rows, seeds=1)


def _largest_divisor(batch: int, fits: int) -> int | None:
  """The largest divisor of `batch` up to `fits`, unless it is awkwardly small (one call then beats many)."""
  if fits >= batch:
    return batch
  rows = max(d for d in range(1, fits + 1) if batch % d == 0)
  return rows if 2 * rows >= fits else None


def build_train_step(
  graphdef: nnx.GraphDef,
  config: TrainConfig,
  num_steps: int,
  *,
  gathered: bool,
  seed_map: str,
  mesh,
  batch: int,
  micro: MicroBatches | None,
  logit_offset: tuple[float, ...] | None = None,
):
  """f(params, rest, opt_state, inputs, y_device, idx, w) -> (params, opt_state, losses, stats).

  idx and w are the step's (S, batch) rows and weights on the host; inputs is
  the split on the device or, `gathered`, the step's (S, batch, ...) inputs on
  the host. One jitted step, or with `micro` (see `plan_micro_batches`) a
  gradient call per block of seeds and rows, then one update. `losses` and
  `stats` are per block of seeds, lists over its rows: `combine_parts` makes
  the step's (S,) loss and (S, batch) statistics of them.
  """
  if micro is None:
    step, _ = train_step_programs(graphdef, config, num_steps, gathered, seed_map, logit_offset)
    spec = sharding.batch_spec(mesh, batch, per_seed=True)

    def one_call(params, rest, opt_state, inputs, y_device, idx, w):
      x = sharding.place(inputs, spec) if gathered else inputs
      params, opt_state, loss, stats = step(
        params, rest, opt_state, x, y_device, sharding.place(idx, spec), sharding.place(w, spec)
      )
      return params, opt_state, [[loss]], [[stats]]

    return one_call
  grad = _micro_grad_fn(graphdef, gathered, seed_map, micro.seeds, logit_offset)
  update = _update_fn(config, num_steps)
  spec = sharding.batch_spec(mesh, micro.rows, per_seed=True)

  def run(params, rest, opt_state, inputs, y_device, idx, w):
    num_seeds = idx.shape[0]
    total = sharding.place_seeds(np.maximum(w.sum(axis=1), 1.0).astype(np.float32), mesh)
    acc, losses, stats = _zeros_like(params), [], []
    for first in range(0, num_seeds, micro.seeds or num_seeds):
      seeds = slice(first, first + micro.seeds) if micro.seeds else slice(None)
      losses.append([])
      stats.append([])
      for start in range(0, batch, micro.rows):
        part = slice(start, start + micro.rows)
        x = sharding.place(inputs[seeds, part], spec) if gathered else inputs
        args = (
          params,
          rest,
          acc,
          x,
          y_device,
          sharding.place(np.ascontiguousarray(idx[seeds, part]), spec),
          sharding.place(np.ascontiguousarray(w[seeds, part]), spec),
          total,
        )
        acc, loss, stat = grad(*args, np.int32(first)) if micro.seeds else grad(*args)
        losses[-1].append(loss)
        stats[-1].append(stat)
    params, opt_state = update(params, opt_state, acc)
    return params, opt_state, losses, stats

  return run


def combine_parts(losses, stats) -> tuple[np.ndarray, dict | None]:
  """A step's (S,) loss and (S, batch) statistics from `build_train_step`'s host parts."""
  loss = np.concatenate([np.sum(block, axis=0) for block in losses])
  if stats is None:
    return loss, None
  return loss, {
    key: np.concatenate([np.concatenate([part[key] for part in block], axis=1) for block in stats])
    for key in stats[0][0]
  }


def example_stats(logits, labels, losses) -> dict:
  """What the dynamics recorder needs of each example in a training batch."""
  is_true = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  true_logit = jnp.sum(jnp.where(is_true, logits, 0.0), axis=-1)
  other_logit = jnp.max(jnp.where(is_true, -jnp.inf, logits), axis=-1)
  return {
    "margin": true_logit - other_logit,
    "correct": jnp.argmax(logits, axis=-1) == labels,
    "p_true": jnp.exp(-losses),
    "loss": losses,
  }
