"""TracIn's two registered scores, over the proxies' TracIn checkpoints (`pruning.scores.tracin`).

- `tracin_self`: `sum_k eta_k ||grad l(w_k, z)||^2`, high for mislabelled and
  atypical examples; from the ghost norms.
- `tracin_test`: `sum_k eta_k <grad l(w_k, z), sum_j grad l(w_k, z'_j)>` over a
  reference split (validation if the data has one, else test). The test side
  sums to one gradient vector, so this is one Jacobian-vector product per
  training example whatever the reference set's size: what a training example
  did for the reference loss (Yang et al. 2023, *Dataset pruning: reducing
  training data by examining generalization influence*).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pruning.errors import UserError
from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, HARDER_LOWER, register_score
from pruning.scores.tracin import TRAIN_BATCH, epoch_learning_rates, tracin_epochs
from pruning.training import pad_rows, trimmed, width_batches, width_groups


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
