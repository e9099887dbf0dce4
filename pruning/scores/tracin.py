"""TracIn: how much training on one example moved the loss of another.

Pruthi, Liu, Kale, Sundararajan, *Estimating Training Data Influence by
Tracing Gradient Descent*, NeurIPS 2020 (TracInCP):

    influence(z, z') = sum_k eta_k <grad_w l(w_k, z), grad_w l(w_k, z')>

over checkpoints w_k of the proxies' training, with eta_k the learning rate
of the epoch that ends at w_k (its steps' mean: a schedule decaying to 0 would
otherwise give the last checkpoint no weight), averaged over the proxy seeds.
Positive: z is a proponent of z' (a step on z lowered l(z')); negative: an
opponent. With Adam, eta_k is the nominal step size, as in Pruthi et al.'s
appendix: the ranking is what is used.

- `influence_matrix`: (N, M) training x test values, exact over every
  parameter by ghost inner products (`pruning.scores.ghost_products`), or
  projected LoGra-style (`projection=k`). Memory holds the test side and one
  training batch, never a per-example gradient of the whole data.
- `tracin_self` and `tracin_test`, the registered scores, are in
  `pruning.scores.tracin_scores`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pruning.data.streaming import take_rows
from pruning.errors import UserError
from pruning.runtime.progress import progress_bar
from pruning.scores import ghost_products as products
from pruning.scores.fisher_influence import preconditioned_influence
from pruning.training import KeptRun, kept_run_store, pad_rows, trimmed, width_batches
from pruning.training.config import TrainConfig

DEFAULT_TRACIN_CHECKPOINTS = 3
INFLUENCE_MEMORY_BYTES = 1 << 30
TRAIN_BATCH = 256


def tracin_epochs(epochs: int, count: int) -> list[int]:
  """`count` checkpoint epochs spread evenly over `epochs`, the last one included."""
  if isinstance(count, bool) or not isinstance(count, int) or count < 1:
    raise UserError(f"TracIn checkpoints {count!r} must be a whole number >= 1, e.g. 3")
  return sorted({max(1, round(epochs * (i + 1) / count)) for i in range(min(count, epochs))})


def kept_checkpoints(dataset, spec, epochs) -> KeptRun:
  """Where the TracIn checkpoints `epochs` of the proxies `spec` (a `ModelSpec` fitted to
  `dataset`) trained on `dataset` are kept: a cache entry keyed by both, which a score job
  with `keep_checkpoints` writes and `pruning.influence` resumes."""
  key = {
    "model": spec.model,
    "options": spec.options,
    "seeds": [int(s) for s in spec.seeds],
    "training": dataclasses.asdict(spec.training),
    "epochs": [int(e) for e in epochs],
    "data": dataset.fingerprint,
    "version": 1,
  }
  return KeptRun(checkpointer=kept_run_store(key), epochs=tuple(int(e) for e in epochs))


def epoch_learning_rates(config: TrainConfig, num_steps: int, epochs: list[int]) -> list[float]:
  """The mean learning rate of the steps of each epoch in `epochs` (`num_steps` over `config.epochs`)."""
  schedule = config.learning_rate_schedule(num_steps)
  per_epoch = max(1, num_steps // config.epochs)
  rates = []
  for epoch in epochs:
    steps = np.arange((epoch - 1) * per_epoch, min(epoch * per_epoch, num_steps))
    values = [float(schedule(int(s))) if callable(schedule) else float(schedule) for s in steps]
    rates.append(float(np.mean(values)) if values else 0.0)
  return rates


@functools.lru_cache(maxsize=16)
def _representations(graphdef: nnx.GraphDef, layers: tuple[str, ...] | None = None):
  return jax.jit(functools.partial(products.gradient_representations, graphdef, layers=layers))


@functools.lru_cache(maxsize=16)
def _token_ids(graphdef: nnx.GraphDef):
  return jax.jit(functools.partial(products.token_ids, graphdef))


@functools.lru_cache(maxsize=16)
def _train_products(graphdef: nnx.GraphDef, layers: tuple[str, ...] | None = None):
  def run(params, rest, x, y, test, projections, slots):
    train = products.gradient_representations(graphdef, params, rest, x, y, projections, layers)
    return products.inner_products(test, train, {path: (table,) for path, table in slots.items()})

  return jax.jit(run)


def _concat(parts: list[dict]) -> dict:
  """Test representations of several width groups as one, examples in group order."""
  out = {}
  for path, first in parts[0].items():
    ((kind, arrays),) = first.items()
    axis = 1 if kind == products.ROWS else 0
    out[path] = {kind: tuple(jnp.concatenate([p[path][kind][i] for p in parts], axis=axis) for i in range(len(arrays)))}
  return out


def _bytes_per_test_example(representation: dict, slots: dict) -> int:
  total = 0
  for path, rep in representation.items():
    ((kind, arrays),) = rep.items()
    if kind == products.TOKENS:
      total += (slots[path][1] + 1) * arrays[1].shape[-1]
    else:
      total += sum(math.prod(a.shape[1:]) for a in arrays)
  return 4 * total


def check_fisher_damping(damping, projection) -> None:
  """Fisher damping is a number > 0, and needs a projection (the Fisher of every parameter is
  too large to invert)."""
  if damping is not None and (projection is None or not (isinstance(damping, float | int) and 0 < damping < math.inf)):
    raise UserError(
      f"Fisher damping {damping!r} needs a projection and a number > 0: give e.g. --projection 32 --fisher-damping 1"
    )


def influence_matrix(
  models,
  train_x,
  train_y,
  test_x,
  test_y,
  *,
  epochs,
  learning_rates,
  projection: int | None = None,
  layers: tuple[str, ...] | None = None,
  damping: float | None = None,
  memory_bytes: int = INFLUENCE_MEMORY_BYTES,
  train_batch: int = TRAIN_BATCH,
  progress: bool = False,
) -> np.ndarray:
  """TracIn of every training example (rows) on every test example (columns): (N, M) float32.

  `epochs` are checkpoints the proxies kept, `learning_rates` their eta_k.
  The test set is taken in chunks whose representations fit in
  `memory_bytes`; each chunk is one pass over the training data per seed
  and checkpoint. `layers` restricts the parameters to those layers (top-level
  attribute names: `("head",)` is last-layer TracIn, as Captum's `TracInCPFast`). `damping`
  (with `projection`) puts the inverse of the projected gradients' damped Fisher between them
  (`pruning.scores.fisher_influence`)."""
  train_y, test_y = np.asarray(train_y, np.int32), np.asarray(test_y, np.int32)
  if len(test_y) == 0:
    raise UserError("no test examples to explain: give at least one")
  check_fisher_damping(damping, projection)
  _check_supported(models, test_x[:1])
  seeds = len(models.seeds)
  graphdef = models.graphdef
  train_groups, test_groups = models.width_groups(train_x), models.width_groups(test_x)
  # The training inputs are transformed a batch at a time: memory holds one batch of them, whatever N.
  test_inputs = models.normalizer(test_x)
  first_params, first_rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.state_at(epochs[0]))
  first = (first_params, first_rest)
  probe_rows, probe_width = test_groups[-1][0][:1], test_groups[-1][1]  # the widest group
  probe = (trimmed(test_inputs[probe_rows], probe_width), test_y[probe_rows])
  probe_x, probe_y = probe
  projections = (
    {}
    if projection is None
    else products.projection_matrices(graphdef, first_params, first_rest, probe_x, probe_y, projection)
  )
  if damping is not None:
    bar = progress_bar(total=len(epochs) * seeds * len(train_y), desc="influence", unit="example", enabled=progress)
    with bar:
      return preconditioned_influence(
        models,
        train_x,
        train_y,
        test_x,
        test_y,
        epochs=epochs,
        learning_rates=learning_rates,
        projections=projections,
        damping=float(damping),
        layers=layers,
        batch=train_batch,
        bar=bar,
      )
  # Each embedding's id slots: the ids the test set reads (the same at every checkpoint and seed).
  seen: dict = {}
  for part, width in width_batches(test_groups, train_batch):
    for path, ids in _token_ids(graphdef)(*first, trimmed(test_inputs[part], width), test_y[part]).items():
      if path not in projections:
        seen.setdefault(path, []).append(np.asarray(ids).ravel())
  modules = products.tapped_layers(graphdef, *first)
  slots = {path: products.id_slots(np.concatenate(ids), modules[path].num_embeddings) for path, ids in seen.items()}
  shapes = jax.eval_shape(_representations(graphdef, layers), *first, *probe, projections)
  per_example = _bytes_per_test_example(shapes, slots)
  chunk = min(len(test_y), memory_bytes // max(per_example, 1))
  if chunk < 1:
    raise UserError(
      f"one test example's gradient takes {per_example / 2**20:.2f} MiB, over the {memory_bytes / 2**20:.2f} MiB"
      " allowed: project it (--projection 64) or allow more memory"
    )
  order = np.concatenate([rows for rows, _ in test_groups])  # test rows in group order
  out = np.zeros((len(train_y), len(test_y)), np.float32)
  chunks = [order[i : i + chunk] for i in range(0, len(order), chunk)]
  passes = len(epochs) * seeds * len(chunks)
  bar = progress_bar(total=passes * len(train_y), desc="TracIn", unit="example", enabled=progress)
  device_slots = {path: (jnp.asarray(table), size) for path, (table, size) in slots.items()}  # placed once
  tables = {path: table for path, (table, _) in device_slots.items()}
  for epoch, rate in zip(epochs, learning_rates):
    state = models.state_at(epoch)
    for seed in range(seeds):
      params, rest = jax.tree.map(lambda a, s=seed: jnp.asarray(a[s]), state)
      for columns in chunks:
        test = _test_side(
          (graphdef, layers), params, rest, test_inputs, test_y, columns, test_groups, projections, device_slots
        )
        for part, width in width_batches(train_groups, train_batch):
          inputs = trimmed(models.normalizer(take_rows(train_x, part)), width)
          x, y = pad_rows(inputs, train_batch), pad_rows(train_y[part], train_batch)
          values = _train_products(graphdef, layers)(params, rest, x, y, test, projections, tables)
          out[np.ix_(part, columns)] += (rate / seeds) * np.asarray(values)[: len(part)]
          bar.update(len(part))
  bar.close()
  return out


def _check_supported(models, x) -> None:
  from pruning.scores.ghost_norms import supports

  params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.state)
  if not supports(models.graphdef, params, rest, models.normalizer(x)):
    raise UserError(
      f"model {models.model!r} has layers TracIn's ghost inner products do not cover (Linear, Conv, Embed,"
      " LayerNorm, GroupNorm, eval-mode BatchNorm): build it from those layers"
    )


def _test_side(program, params, rest, inputs, labels, columns, groups, projections, slots) -> dict:
  """The test representations of `columns` (rows of the test split, in group order)."""
  parts = []
  for rows, width in groups:
    part = rows[np.isin(rows, columns)]  # in group order, as `columns` is
    if len(part):
      rep = _representations(*program)(params, rest, trimmed(inputs[part], width), labels[part], projections)
      parts.append(products.as_test_side(rep, slots))
  return _concat(parts)
