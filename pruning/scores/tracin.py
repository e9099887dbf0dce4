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
- `tracin_self` (score): `sum_k eta_k ||grad l(w_k, z)||^2`, high for
  mislabelled and atypical examples; from the ghost norms.
- `tracin_test` (score): `sum_k eta_k <grad l(w_k, z), sum_j grad l(w_k, z'_j)>`
  over a reference split (validation if the data has one, else test). The
  test side sums to one gradient vector, so this is one Jacobian-vector
  product per training example whatever the reference set's size: what a
  training example did for the reference loss (Yang et al. 2023, *Dataset
  pruning: reducing training data by examining generalization influence*).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pruning.data.streaming import take_rows
from pruning.errors import UserError
from pruning.runtime.progress import progress_bar
from pruning.scores import ghost_products as products
from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, HARDER_LOWER, register_score
from pruning.training import KeptRun, kept_run_store, pad_rows, trimmed, width_batches, width_groups
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
  memory_bytes: int = INFLUENCE_MEMORY_BYTES,
  train_batch: int = TRAIN_BATCH,
  progress: bool = False,
) -> np.ndarray:
  """TracIn of every training example (rows) on every test example (columns): (N, M) float32.

  `epochs` are checkpoints the proxies kept, `learning_rates` their eta_k.
  The test set is taken in chunks whose representations fit in
  `memory_bytes`; each chunk is one pass over the training data per seed
  and checkpoint. `layers` restricts the parameters to those layers (top-level
  attribute names: `("head",)` is last-layer TracIn, as Captum's `TracInCPFast`)."""
  train_y, test_y = np.asarray(train_y, np.int32), np.asarray(test_y, np.int32)
  if len(test_y) == 0:
    raise UserError("no test examples to explain: give at least one")
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


@functools.lru_cache(maxsize=16)
def _loss_directional_derivatives(graphdef: nnx.GraphDef):
  """f(params, rest, x, y, v) -> (B,) `<grad l(w, z_i), v>` for every example, by one JVP."""

  def run(params, rest, x, y, direction):
    def losses(p):
      logits = nnx.merge(graphdef, p, rest)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    return jax.jvp(losses, (params,), (direction,))[1]

  return jax.jit(run)


@functools.lru_cache(maxsize=16)
def _summed_loss_gradient(graphdef: nnx.GraphDef):
  def run(params, rest, x, y, weights):
    def loss(p):
      logits = nnx.merge(graphdef, p, rest)(x)
      return jnp.sum(weights * optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return jax.grad(loss)(params)

  return jax.jit(run)


def directional_influence(models, x, y, directions: dict, rates: dict, *, batch: int = TRAIN_BATCH) -> np.ndarray:
  """(S, N) `sum_k eta_k <grad l(w_k, z_i), v_k>` for per-seed directions {epoch: [v per seed]}."""
  inputs, y = models.normalizer(x), np.asarray(y, np.int32)
  out = np.zeros((len(models.seeds), len(y)), np.float32)
  fn = _loss_directional_derivatives(models.graphdef)
  for epoch, per_seed in directions.items():
    state = models.state_at(epoch)
    for seed, direction in enumerate(per_seed):
      params, rest = jax.tree.map(lambda a, s=seed: jnp.asarray(a[s]), state)
      for part, width in width_batches(models.width_groups(x), batch):
        values = fn(params, rest, pad_rows(trimmed(inputs[part], width), batch), pad_rows(y[part], batch), direction)
        out[seed, part] += rates[epoch] * np.asarray(values)[: len(part)]
  return out


def reference_split(dataset):
  """(name, split) TracIn's `tracin_test` sums over: the validation split, else the test split."""
  for name in ("validation", "test"):
    split = getattr(dataset, name, None)
    if split is not None and len(split):
      return name, split
  raise UserError(
    "tracin_test sums influence on a held-out split and the data has none:"
    " hold one out with --validation 0.1 (or --holdout 0.2 for data without a test split)"
  )


def _checkpoint_epochs(spec) -> list[int]:
  return tracin_epochs(spec.training.epochs, spec.tracin_checkpoints)


def _rates(models) -> tuple[list[int], list[float]]:
  spec = models.extras["proxy_spec"]
  epochs = _checkpoint_epochs(spec)
  return epochs, epoch_learning_rates(spec.training, models.num_steps, epochs)


class TracInReference:
  """Epoch hook of `tracin_test`: at each TracIn checkpoint, every seed's
  gradient of the summed loss over the reference split (one vector a seed)."""

  def __init__(self, dataset, spec):
    self.split_name, split = reference_split(dataset)
    self.x, self.y = split.x, np.asarray(split.y, np.int32)
    self.epochs = set(_checkpoint_epochs(spec))
    self.model, self.options = spec.model, spec.model_spec.for_data(dataset).options  # with the pad id
    self.directions: dict[int, list[np.ndarray]] = {}  # epoch -> leaves stacked over seeds

  def __call__(self, epoch, graphdef, normalizer, params, rest) -> None:
    if epoch not in self.epochs:
      return
    inputs = normalizer(self.x)
    groups = width_groups(self.model, self.options, normalizer, self.x)
    seeds = jax.tree.leaves(params)[0].shape[0]
    per_seed = []
    for seed in range(seeds):
      p, r = jax.tree.map(lambda a, s=seed: a[s], (params, rest))
      per_seed.append(jax.tree.leaves(_reference_gradient(graphdef, p, r, inputs, self.y, groups)))
    self.directions[epoch] = [np.stack([np.asarray(leaves[i]) for leaves in per_seed]) for i in range(len(per_seed[0]))]

  def state_dict(self) -> dict:
    state: dict = {"epochs": np.asarray(sorted(self.directions), np.int64)}
    for epoch, leaves in self.directions.items():
      state.update({f"epoch{epoch}_leaf{i}": leaf for i, leaf in enumerate(leaves)})
    return state

  def load_state_dict(self, state: dict) -> None:
    self.directions = {}
    for epoch in np.asarray(state["epochs"]).tolist():
      count = sum(1 for key in state if key.startswith(f"epoch{epoch}_leaf"))
      self.directions[int(epoch)] = [np.asarray(state[f"epoch{epoch}_leaf{i}"]) for i in range(count)]

  def results(self) -> dict:
    return {
      "tracin_directions": self.directions,
      "tracin_reference": {"split": self.split_name, "examples": len(self.y)},
    }


def _reference_gradient(graphdef, params, rest, inputs, y, groups, batch: int = TRAIN_BATCH):
  total = None
  for part, width in width_batches(groups, batch):
    weights = pad_rows(np.ones(len(part), np.float32), batch)
    grads = _summed_loss_gradient(graphdef)(
      params, rest, pad_rows(trimmed(inputs[part], width), batch), pad_rows(y[part], batch), weights
    )
    total = grads if total is None else jax.tree.map(jnp.add, total, grads)
  return total


def _provenance(spec, models) -> dict:
  epochs, rates = _rates(models)
  record = {"checkpoints": epochs, "learning_rates": rates}
  if "tracin_reference" in models.extras:
    record["reference_split"] = models.extras["tracin_reference"]
  return record


@register_score(
  "tracin_self",
  harder=HARDER_HIGHER,
  description="TracIn self-influence: sum over checkpoints of lr x squared gradient norm",
  reference="Pruthi et al., NeurIPS 2020",
  at_checkpoint=False,
  checkpoints=_checkpoint_epochs,
  provenance=_provenance,
)
def tracin_self(context: ScoringContext, epoch: int | None) -> np.ndarray:
  from pruning.scores.grand import grand_values

  total = np.zeros((len(context.models.seeds), len(context.y)), np.float64)
  for checkpoint, rate in zip(*_rates(context.models)):
    norms = grand_values(
      context.models, context.x, context.y, epoch=checkpoint, rows_hint=len(context.split_labels), progress=False
    )
    total += rate * np.square(norms, dtype=np.float64)
  return total.astype(np.float32)


@register_score(
  "tracin_test",
  harder=HARDER_LOWER,
  description="TracIn on the held-out split, summed: how much each example lowered its loss (low: harmful)",
  reference="Pruthi et al., NeurIPS 2020; Yang et al., ICLR 2023",
  at_checkpoint=False,
  checkpoints=_checkpoint_epochs,
  training_hook=TracInReference,
  provenance=_provenance,
)
def tracin_test(context: ScoringContext, epoch: int | None) -> np.ndarray:
  models = context.models
  epochs, rates = _rates(models)
  directions = {}
  for checkpoint in epochs:
    treedef = jax.tree.structure(models.state_at(checkpoint)[0])
    leaves = models.extras["tracin_directions"][checkpoint]
    directions[checkpoint] = [
      jax.tree.unflatten(treedef, [leaf[s] for leaf in leaves]) for s in range(len(models.seeds))
    ]
  return directional_influence(models, context.x, context.y, directions, dict(zip(epochs, rates)))
