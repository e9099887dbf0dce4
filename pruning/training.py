"""Training S seeds of one model as a single jitted program.

Parameters of all seeds are stacked on a leading axis; each jitted step maps
the forward pass, gradient and optax update over the seeds
(`pruning.sharding.seed_map`: a convolutional model's seeds one after
another on one CPU device, otherwise `jax.vmap`, with the seeds split over
the devices). On CPU, a step whose temporaries would not fit under glibc's
mmap threshold sums its gradient over micro-batches in separate calls, then
updates once (`micro_batch_rows`: the same step up to float rounding, 2x
faster for the zoo's CNN). Seed `s` fixes both the initialisation (`jax.random.key(s)`)
and the data order (`numpy.random.default_rng(s)`), so the same seeds give
the same models, bit for bit, on the same machine.

Every epoch visits each example exactly once: the last, short batch is padded
with zero-weight entries instead of being dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pruning import sharding
from pruning.call_size import rows_per_call
from pruning.data.normalization import Normalizer
from pruning.data.streaming import is_mapped, release, take_rows
from pruning.dynamics import DEFAULT_WINDOW, DynamicsRecorder
from pruning.errors import UserError, unknown_name_error
from pruning.models import create_model, validate_model_options
from pruning.progress import progress_bar, progress_enabled

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
EVAL_BATCH = 1024
MAX_STEPS_IN_FLIGHT = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
  """Optimisation settings shared by proxy training and retraining."""

  # One set of defaults for the CLI, YAML and Python: the quick start's.
  epochs: int = 30
  batch_size: int = 64
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  momentum: float = 0.9
  weight_decay: float = 0.0
  schedule: str = "constant"

  def __post_init__(self):
    from pruning.validation import check_fields

    check_fields(self, "training")
    if not isinstance(self.epochs, int) or self.epochs < 1:
      raise UserError(f"epochs must be a positive integer, got {self.epochs!r}")
    if not isinstance(self.batch_size, int) or self.batch_size < 1:
      raise UserError(f"batch_size must be a positive integer, got {self.batch_size!r}")
    if self.optimizer not in OPTIMIZERS:
      raise unknown_name_error("optimizer", self.optimizer, OPTIMIZERS)
    if self.schedule not in SCHEDULES:
      raise unknown_name_error("schedule", self.schedule, SCHEDULES)
    if not self.learning_rate > 0:
      raise UserError(f"learning_rate must be positive, got {self.learning_rate!r}")
    if self.weight_decay < 0:
      raise UserError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

  def make_optimizer(self, num_steps: int) -> optax.GradientTransformation:
    learning_rate = self.learning_rate
    if self.schedule == "cosine":
      learning_rate = optax.cosine_decay_schedule(self.learning_rate, max(num_steps, 1))
    if self.optimizer == "adam":
      return optax.adamw(learning_rate, weight_decay=self.weight_decay)
    return optax.chain(
      optax.add_decayed_weights(self.weight_decay),
      optax.sgd(learning_rate, momentum=self.momentum),
    )


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return math.ceil(num_examples / min(batch_size, num_examples))


@dataclasses.dataclass
class TrainedModels:
  """S trained models of one architecture, stacked over seeds.

  `checkpoints` maps an epoch (0 is the initialisation) to the stacked state
  at the end of that epoch; `state` is the state after the last step.
  """

  model: str
  model_options: dict
  input_shape: tuple[int, ...]
  num_classes: int
  seeds: tuple[int, ...]
  normalizer: Normalizer
  graphdef: nnx.GraphDef
  state: tuple
  checkpoints: dict[int, tuple]
  num_steps: int
  loss_history: list[list[float]]
  dynamics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def state_at(self, epoch: int | None = None) -> tuple:
    if epoch is None:
      return self.state
    if epoch not in self.checkpoints:
      raise UserError(f"no checkpoint at epoch {epoch} (kept: {sorted(self.checkpoints)}): ask for it when training")
    return self.checkpoints[epoch]

  def placed_state(self, epoch: int | None = None) -> tuple:
    """(params, rest, mesh): the state at `epoch` split over the local devices'
    `seeds` axis (see `pruning.sharding`); mesh is None with one device."""
    mesh = sharding.device_mesh(len(self.seeds))
    params, rest = sharding.place_seeds(self.state_at(epoch), mesh)
    return params, rest, mesh

  def logits(
    self,
    x: np.ndarray,
    *,
    epoch: int | None = None,
    batch_size: int = EVAL_BATCH,
    rows_hint: int | None = None,
    progress: bool = False,
  ) -> np.ndarray:
    """Logits of every seed on raw inputs `x`: an (S, N, C) float32 array.

    Batches are sized for `rows_hint` rows (default: N), so a block or shard
    of a split runs the shapes the whole split runs (the same bits)."""
    params, rest, mesh = self.placed_state(epoch)
    forward = _forward_fn(self.graphdef, sharding.seed_map(params, "loop"))
    n = len(x)
    batch = min(batch_size, max(rows_hint or n, 1))
    rows_sharding = sharding.batch_spec(mesh, batch, per_seed=False)
    out = np.empty((len(self.seeds), n, self.num_classes), np.float32)
    starts = range(0, n, batch)
    desc = "forward pass" + ("" if epoch is None else f" (epoch {epoch})")
    for start in progress_bar(starts, desc=desc, enabled=progress):
      stop = min(start + batch, n)
      rows = sharding.place(pad_rows(self.normalizer(x[start:stop]), batch), rows_sharding)
      release(x)
      out[:, start:stop] = np.asarray(forward(params, rest, rows))[:, : stop - start]
    return out

  def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
    """Predicted classes of every seed: an (S, N) int64 array."""
    return self.logits(x, **kwargs).argmax(-1).astype(np.int64)


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
  """`a` with zero rows appended up to `size`, so every batch has one shape (one compilation)."""
  padded = np.zeros((size, *a.shape[1:]), a.dtype)
  padded[: len(a)] = a
  return padded


# Compiled functions are cached by architecture (GraphDef is hashable), so
# retraining arms, repeated runs in a notebook and benchmarks compile once.
@functools.lru_cache(maxsize=64)
def _forward_fn(graphdef: nnx.GraphDef, seed_map: str = "vmap"):
  def apply(params, rest, x):
    return nnx.merge(graphdef, params, rest)(x)

  return jax.jit(sharding.map_over_seeds(apply, (0, 0, None), seed_map))


_UNOPTIMISED = {"xla_backend_optimization_level": 0}


def init_models(
  model: str, model_options: dict, *, input_shape, num_classes: int, seeds: Sequence[int]
) -> tuple[nnx.GraphDef, tuple]:
  """Stacked initial states of `model`, one per seed, built in one vmapped call."""
  model_options = validate_model_options(model, model_options)

  def build(key):
    return create_model(model, input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(key), **model_options)

  graphdef = nnx.split(nnx.eval_shape(lambda: build(jax.random.key(0))), nnx.Param, ...)[0]

  def init(key):
    _, params, rest = nnx.split(build(key), nnx.Param, ...)
    return params, rest

  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  lowered = jax.jit(jax.vmap(init)).lower(keys)
  # The program runs once, in milliseconds, but XLA's CPU optimiser took 22 s
  # to compile resnet18's initialisers (2.8 s for the CNN); unoptimised, 1.7 s
  # (0.7 s). The values agree to 1-2 ulp, deterministically.
  options = _UNOPTIMISED if jax.default_backend() == "cpu" else None
  return graphdef, lowered.compile(compiler_options=options)(keys)


# Steps are counted in int32 on the device.
MAX_STEPS = 2**31 - 1


def parameter_count(model: str, model_options: dict, *, input_shape, num_classes: int) -> int:
  """The model's number of parameters, from shapes alone (nothing allocated).

  Refuses a model that normalises with batch statistics (BatchNorm in training mode):
  one example's output would depend on the others in its batch, so
  per-example scores are not defined, and training it in one compiled
  program over seeds fails deep inside Flax."""
  abstract = nnx.eval_shape(
    lambda: create_model(model, input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(0), **model_options)
  )
  training_mode = [
    path
    for path, module in nnx.iter_modules(abstract)
    if isinstance(module, nnx.BatchNorm) and not module.use_running_average
  ]
  if training_mode:
    raise UserError(
      f"model {model!r} normalises with batch statistics (BatchNorm in training mode): per-example"
      " scores need each example's output to be independent of its batch; use nnx.GroupNorm or"
      " nnx.LayerNorm (as resnet18 does), or BatchNorm(use_running_average=True)"
    )
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def plan_training(
  model: str,
  model_options: dict,
  *,
  input_shape,
  num_classes: int,
  seeds,
  n: int,
  num_steps: int,
  per_epoch: int,
  kept_states: int,
  dynamics_window: int | None,
  desc: str,
  progress: bool,
) -> None:
  """Refuses training that cannot fit before anything is allocated, and says
  what will run (examples, seeds, steps) in one line on stderr."""
  from pruning.validation import check_fits, format_bytes

  if num_steps > MAX_STEPS:
    raise UserError(f"{desc}: {num_steps} steps is more than the {MAX_STEPS} a job can count: train fewer epochs")
  count = parameter_count(model, model_options, input_shape=input_shape, num_classes=num_classes)
  # Per seed: parameters, gradients and two optimiser moments in float32, the
  # states kept for NAME@E scores, and as much again for XLA's temporaries.
  state_bytes = 4 * count * len(seeds) * (4 + kept_states) * 2
  dynamics_bytes = 0 if dynamics_window is None else 4 * len(seeds) * n * (dynamics_window + 8)
  check_fits(
    state_bytes + dynamics_bytes,
    what=f"{desc} ({len(seeds)} seeds of a {model} with {count:,} parameters)",
    fix="use fewer seeds or a smaller model",
  )
  if progress and progress_enabled():
    import sys

    print(
      f"{desc}: {n} examples x {len(seeds)} seed{'s' if len(seeds) != 1 else ''}, {num_steps} steps"
      f" ({math.ceil(num_steps / per_epoch)} epochs of {per_epoch}), {model} with {count:,} parameters"
      f" (~{format_bytes(state_bytes)} of state)",
      file=sys.stderr,
    )


def _epoch_order(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
  """One epoch's batches of one seed: (steps, batch) row positions, the last
  batch padded with position 0 (which `_batch_weights` gives weight 0)."""
  steps = math.ceil(n / batch)
  order = np.zeros(steps * batch, np.int32)
  order[:n] = rng.permutation(n)
  return order.reshape(steps, batch)


def _batch_weights(n: int, batch: int) -> np.ndarray:
  """(steps, batch) weights of an epoch's entries, 0 for padding; the same for every seed."""
  steps = math.ceil(n / batch)
  return (np.arange(steps * batch) < n).astype(np.float32).reshape(steps, batch)


@functools.lru_cache(maxsize=64)
def _step_fn(
  graphdef: nnx.GraphDef, config: TrainConfig, num_steps: int, gathered: bool = False, seed_map: str = "vmap"
):
  """One jitted optimisation step of every seed, mapped over the stacked states
  by `seed_map` (`pruning.sharding.map_over_seeds`).

  The step reads its batch from the whole split on the device (`x_all[idx]`),
  or, `gathered`, takes each seed's batch of inputs gathered on the host (for
  features mapped from disk, which never go to the device whole).

  Steps run from a Python loop rather than a `lax.scan`: XLA's CPU backend
  runs convolutions inside a while loop about 10x slower than at top level
  (measured here: 0.84 s against 0.08 s for a CNN step at batch 64).
  """

  optimizer = config.make_optimizer(num_steps)

  def loss_fn(params, rest, x, y, w):
    logits = nnx.merge(graphdef, params, rest)(x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
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
def _micro_grad_fn(graphdef: nnx.GraphDef, gathered: bool, seed_map: str, seeds_per_call: int | None = None):
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
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, y_all[idx])
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


def micro_batch_rows(
  graphdef: nnx.GraphDef, params, rest, inputs, y_device, *, batch: int, gathered: bool, seed_map: str, mesh
) -> MicroBatches | None:
  """How a step's gradient is summed over micro-batches, or None for one call.

  On CPU, a call whose temporaries exceed glibc's mmap threshold faults them
  in again on every call (`pruning.call_size`); a CNN step at batch 512 ran
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


def step_runner(
  graphdef: nnx.GraphDef,
  config: TrainConfig,
  num_steps: int,
  *,
  gathered: bool,
  seed_map: str,
  mesh,
  batch: int,
  micro: MicroBatches | None,
):
  """f(params, rest, opt_state, inputs, y_device, idx, w) -> (params, opt_state, losses, stats).

  idx and w are the step's (S, batch) rows and weights on the host; inputs is
  the split on the device or, `gathered`, the step's (S, batch, ...) inputs on
  the host. One jitted step, or with `micro` (see `micro_batch_rows`) a
  gradient call per block of seeds and rows, then one update. `losses` and
  `stats` are per block of seeds, lists over its rows: `combine_parts` makes
  the step's (S,) loss and (S, batch) statistics of them.
  """
  if micro is None:
    step, _ = _step_fn(graphdef, config, num_steps, gathered, seed_map)
    spec = sharding.batch_spec(mesh, batch, per_seed=True)

    def run(params, rest, opt_state, inputs, y_device, idx, w):
      x = sharding.place(inputs, spec) if gathered else inputs
      params, opt_state, loss, stats = step(
        params, rest, opt_state, x, y_device, sharding.place(idx, spec), sharding.place(w, spec)
      )
      return params, opt_state, [[loss]], [[stats]]

    return run
  grad, update = _micro_grad_fn(graphdef, gathered, seed_map, micro.seeds), _update_fn(config, num_steps)
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
  """A step's (S,) loss and (S, batch) statistics from `step_runner`'s host parts."""
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


def _to_host(tree):
  # A real copy: the device buffers are donated to the next step.
  return jax.tree.map(lambda a: np.array(a, copy=True), tree)


def _run_signature(model, model_options, seeds, config, num_steps, checkpoint_epochs, window, x, y, rows) -> dict:
  """What a checkpoint must match to be resumed: the run's settings and data identity."""
  import hashlib

  digest = hashlib.sha256()
  for array in (np.asarray(y), rows, np.asarray(x.shape)):
    digest.update(np.ascontiguousarray(array).tobytes())
  digest.update(np.ascontiguousarray(x[rows[: min(len(rows), 256)]]).tobytes())
  return {
    "model": model,
    "model_options": model_options,
    "seeds": list(seeds),
    "config": dataclasses.asdict(config),
    "num_steps": num_steps,
    "checkpoint_epochs": list(checkpoint_epochs),
    "window": window,
    "data": digest.hexdigest(),
  }


def _host_state(recorder, hooks) -> tuple[dict, dict]:
  arrays, scalars = {}, {}
  recorded = [("recorder", recorder.state_dict())] if recorder is not None else []
  for prefix, state in recorded + [(f"hook{i}", _hook_state(hook)) for i, hook in enumerate(hooks)]:
    for key, value in state.items():
      if isinstance(value, np.ndarray):
        arrays[f"{prefix}/{key}"] = value
      else:
        scalars[f"{prefix}/{key}"] = value
  return arrays, scalars


def _hook_state(hook) -> dict:
  if not hasattr(hook, "state_dict"):
    raise UserError(f"epoch hook {hook!r} has no state_dict(), so training with it cannot be checkpointed")
  return hook.state_dict()


def _save(
  checkpointer,
  epoch,
  signature,
  params,
  rest,
  opt_state,
  checkpoints,
  loss_history,
  done,
  recorder,
  hooks,
  rngs,
  *,
  force,
):
  from pruning.checkpointing import generator_states

  arrays, scalars = _host_state(recorder, hooks)
  checkpointer.save(
    epoch,
    signature=signature,
    device_state={
      "params": params,
      "rest": rest,
      "opt_state": opt_state,
      "checkpoints": {str(e): state for e, state in checkpoints.items()},
    },
    host={
      "loss_history": loss_history,
      "done": done,
      "rngs": generator_states(rngs),
      "scalars": scalars,
      "checkpoint_epochs": sorted(checkpoints),
    },
    arrays=arrays,
    force=force,
  )


def _resume(checkpointer, signature, params, rest, opt_state, recorder, hooks, rngs):
  """Restores the newest checkpoint into the run's objects; None if there is none."""
  from pruning.checkpointing import restore_generators

  def target(host):
    return {
      "params": params,
      "rest": rest,
      "opt_state": opt_state,
      "checkpoints": {str(e): (params, rest) for e in host["checkpoint_epochs"]},
    }

  loaded = checkpointer.load(signature=signature, target_fn=target)
  if loaded is None:
    return None
  device, host, arrays = loaded
  states: dict[str, dict] = {}
  for key, value in list(arrays.items()) + list(host["scalars"].items()):
    prefix, name = key.split("/", 1)
    states.setdefault(prefix, {})[name] = value
  if recorder is not None:
    recorder.load_state_dict(states.pop("recorder"))
  for i, hook in enumerate(hooks):
    hook.load_state_dict(states.get(f"hook{i}", {}))
  restore_generators(rngs, host["rngs"])
  checkpoints = {int(e): _to_host(tuple(state)) for e, state in device["checkpoints"].items()}
  return (
    (device["params"], device["rest"], device["opt_state"], checkpoints),
    host["loss_history"],
    host["done"],
    host["epoch"] + 1,
  )


def train_models(
  x: np.ndarray,
  y: np.ndarray,
  *,
  model: str,
  model_options: dict | None = None,
  num_classes: int,
  seeds: Sequence[int],
  config: TrainConfig,
  normalizer: Normalizer | None = None,
  normalize: str = "auto",
  num_steps: int | None = None,
  checkpoint_epochs: Iterable[int] = (),
  rows: np.ndarray | None = None,
  dynamics_window: int = DEFAULT_WINDOW,
  record_dynamics: bool = True,
  epoch_hooks: Sequence = (),
  checkpointer=None,
  desc: str = "training",
  progress: bool = True,
) -> TrainedModels:
  """Trains one model per seed on (x, y), all seeds in one compiled program.

  Args:
    x, y: raw training inputs and integer labels.
    num_steps: optimisation steps; defaults to `config.epochs` epochs. Retraining
      on a subset passes the full data's step count here (as Data Diet does).
    checkpoint_epochs: epochs whose state to keep (0 = initialisation).
    rows: train on `x[rows]` only. Subsets pass the full arrays and their rows,
      so every subset of a dataset reuses one compiled step.
    normalizer: input standardisation; fitted on the training rows when not
      given, with statistics chosen by `normalize` (`auto`, `per_feature`,
      `per_channel`, `global`, `none`; see `pruning.data.normalization`).
    dynamics_window: J, the window of the dynamic-uncertainty score.
    record_dynamics: record the training-dynamics scores (O(S x N x J)
      memory); off, `dynamics` is empty.
    epoch_hooks: callables `hook(epoch, graphdef, normalizer, params, rest)`
      run at the end of every epoch with the stacked state (e.g. VoG's running
      statistics); they must not keep references to the donated buffers.
    checkpointer: a `pruning.checkpointing.TrainingCheckpointer`: the whole
      training state is saved at epoch ends and, if the checkpointer holds a
      checkpoint of this same run, training resumes from it (bit for bit).
      Hooks then need `state_dict()` and `load_state_dict()`.

  Per-example training dynamics (forgetting, AUM, dynamic uncertainty, mean
  loss) are recorded as the steps run: see `pruning.dynamics`.
  """
  seeds = tuple(int(s) for s in seeds)
  if not seeds:
    raise UserError("no seeds given: train at least one seed")
  if len(set(seeds)) != len(seeds):
    raise UserError(f"seeds repeat ({list(seeds)}): give distinct seeds")
  # int32 positions: half the memory of int64 for the per-epoch order of large splits.
  rows = np.arange(len(y), dtype=np.int32) if rows is None else np.asarray(rows, np.int32)
  n = len(rows)
  if n == 0:
    raise UserError("cannot train on zero examples: keep at least one example")
  model_options = validate_model_options(model, model_options)
  every_row = n == len(x) and bool(np.all(rows[1:] > rows[:-1]))  # all rows, in order
  normalizer = normalizer or Normalizer.fit(x, rows=None if every_row else rows, mode=normalize)
  batch = min(config.batch_size, n)
  per_epoch = steps_per_epoch(n, batch)
  num_steps = int(num_steps) if num_steps is not None else config.epochs * per_epoch
  checkpoint_epochs = sorted(set(int(e) for e in checkpoint_epochs))
  max_epoch = math.ceil(num_steps / per_epoch)
  if checkpoint_epochs and (checkpoint_epochs[0] < 0 or checkpoint_epochs[-1] > max_epoch):
    raise UserError(
      f"checkpoint epochs {checkpoint_epochs} fall outside 0..{max_epoch}: train for"
      " more epochs or ask for earlier ones"
    )
  input_shape = tuple(x.shape[1:])
  plan_training(
    model,
    model_options,
    input_shape=input_shape,
    num_classes=num_classes,
    seeds=seeds,
    n=n,
    num_steps=num_steps,
    per_epoch=per_epoch,
    kept_states=len(checkpoint_epochs),
    dynamics_window=dynamics_window if record_dynamics else None,
    desc=desc,
    progress=progress,
  )
  graphdef, (params, rest) = init_models(
    model, model_options, input_shape=input_shape, num_classes=num_classes, seeds=seeds
  )
  # Features mapped from disk stay there: each step's rows are gathered on the host.
  streamed = is_mapped(x)
  # With several devices the seeds' states split over a mesh (`pruning.sharding`).
  mesh = sharding.device_mesh(len(seeds))
  params, rest = sharding.place_seeds((params, rest), mesh)
  seed_map = sharding.seed_map(params, "unroll")
  _, init_optimizer = _step_fn(graphdef, config, num_steps, streamed, seed_map)
  opt_state = init_optimizer(params)
  x_device = None if streamed else sharding.replicate(jnp.asarray(normalizer(x)), mesh)
  y_device = sharding.replicate(jnp.asarray(np.asarray(y, np.int32)), mesh)
  inputs_like = normalizer(take_rows(x, rows[:1]))[None] if streamed else x_device
  micro = micro_batch_rows(
    graphdef, params, rest, inputs_like, y_device, batch=batch, gathered=streamed, seed_map=seed_map, mesh=mesh
  )
  step = step_runner(
    graphdef, config, num_steps, gathered=streamed, seed_map=seed_map, mesh=mesh, batch=batch, micro=micro
  )
  rngs = [np.random.default_rng(s) for s in seeds]
  checkpoints = {0: _to_host((params, rest))} if 0 in checkpoint_epochs else {}
  loss_history: list[list[float]] = []
  recorder = DynamicsRecorder(len(seeds), n, window=dynamics_window) if record_dynamics else None
  done = 0
  first_epoch = 1
  if checkpointer is not None:
    signature = _run_signature(
      model,
      model_options,
      seeds,
      config,
      num_steps,
      checkpoint_epochs,
      dynamics_window if record_dynamics else None,
      x,
      y,
      rows,
    )
    resumed = _resume(checkpointer, signature, params, rest, opt_state, recorder, epoch_hooks, rngs)
    if resumed is not None:
      (params, rest, opt_state, checkpoints), loss_history, done, first_epoch = resumed
  bar = progress_bar(total=max_epoch, initial=first_epoch - 1, desc=desc, unit="epoch", enabled=progress)
  for epoch in range(first_epoch, max_epoch + 1):
    orders = [_epoch_order(rng, n, batch) for rng in rngs]
    weight = _batch_weights(n, batch)
    steps = min(per_epoch, num_steps - done)
    losses, stats = [], []  # on the host: each step's (S,) loss and (S, batch) statistics
    in_flight = collections.deque()
    for k in range(steps):
      # Step k's rows of every seed, (S, batch): built per step, so no (steps, S, batch) copies.
      idx = np.stack([rows[order[k]] for order in orders]).astype(np.int32)
      w = np.broadcast_to(weight[k], idx.shape)
      inputs = x_device
      if streamed:
        inputs = normalizer(take_rows(x, idx.reshape(-1))).reshape(idx.shape + x.shape[1:])
      params, opt_state, loss_parts, stat_parts = step(params, rest, opt_state, inputs, y_device, idx, w)
      in_flight.append((loss_parts, stat_parts if recorder is not None else None))
      # Dispatch is asynchronous: a few steps stay queued (the device never
      # waits for the host); older ones are fetched, so neither queued
      # batches nor per-step device arrays pile up over an epoch.
      while len(in_flight) > MAX_STEPS_IN_FLIGHT or (k == steps - 1 and in_flight):
        loss, batch_stats = combine_parts(*jax.device_get(in_flight.popleft()))
        losses.append(loss)
        if batch_stats is not None:
          stats.append(batch_stats)
    done += steps
    epoch_loss = np.stack(losses).mean(axis=0)
    if recorder is not None:
      positions = np.stack([order[:steps].reshape(-1) for order in orders])  # (S, steps * batch)
      weights = np.broadcast_to(weight[:steps].reshape(-1), positions.shape)
      stacked = {key: np.stack([st[key] for st in stats], axis=1).reshape(len(seeds), -1) for key in stats[0]}
      recorder.record_epoch(positions, weights, stacked)
    if not np.all(np.isfinite(epoch_loss)):
      raise UserError(f"training diverged at epoch {epoch} (loss {epoch_loss.tolist()}): lower the learning rate")
    loss_history.append(epoch_loss.tolist())
    if epoch in checkpoint_epochs:
      checkpoints[epoch] = _to_host((params, rest))
    for hook in epoch_hooks:
      hook(epoch, graphdef, normalizer, params, rest)
    if checkpointer is not None:
      _save(
        checkpointer,
        epoch,
        signature,
        params,
        rest,
        opt_state,
        checkpoints,
        loss_history,
        done,
        recorder,
        epoch_hooks,
        rngs,
        force=epoch == max_epoch,
      )
    bar.update(1)
    bar.set_postfix(loss=f"{float(epoch_loss.mean()):.4f}", refresh=False)
  bar.close()
  return TrainedModels(
    model=model,
    model_options=model_options,
    input_shape=input_shape,
    num_classes=num_classes,
    seeds=seeds,
    normalizer=normalizer,
    graphdef=graphdef,
    state=_to_host((params, rest)),
    checkpoints=checkpoints,
    num_steps=num_steps,
    loss_history=loss_history,
    dynamics=recorder.scores() if recorder is not None else {},
  )
