"""Vmapped seed training: equal to training each seed alone, deterministic, exact epochs."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

import pruning
from pruning.training import TrainConfig, steps_per_epoch, train_models
from pruning.training.loop import _batch_weights, _epoch_order


def _params(models, position):
  return {k: np.asarray(v)[position] for k, v in _flat(nnx.to_pure_dict(models.state[0])).items()}


def _flat(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = value
  return out


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_runs(digits):
  x, y = digits.train.x[:250], digits.train.y[:250]
  config = TrainConfig(epochs=2, batch_size=40, optimizer="sgd", learning_rate=0.05)
  together = train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model="mlp", options={"hidden": [16]}, seeds=[4, 9], training=config),
    progress=False,
  )
  for position, seed in enumerate([4, 9]):
    alone = train_models(
      pruning.TrainData(x=x, y=y, num_classes=10),
      pruning.ModelSpec(model="mlp", options={"hidden": [16]}, seeds=[seed], training=config),
      progress=False,
    )
    a, b = _params(together, position), _params(alone, 0)
    for name in a:
      np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
  first = _params(together, 0)
  second = _params(together, 1)
  assert any(not np.allclose(first[k], second[k]) for k in first), "seeds must differ"


def test_training_is_bitwise_deterministic(digits):
  x, y = digits.train.x[:200], digits.train.y[:200]
  runs = [
    train_models(
      pruning.TrainData(x=x, y=y, num_classes=10),
      pruning.ModelSpec(model="linear", seeds=[0, 1], training=TrainConfig(epochs=2, batch_size=32)),
      progress=False,
    )
    for _ in range(2)
  ]
  assert np.array_equal(runs[0].logits(x), runs[1].logits(x))


def test_epoch_order_visits_every_example_once():
  rng = np.random.default_rng(0)
  order, weight = _epoch_order(rng, 103, 25), _batch_weights(103, 25)
  assert order.shape == (5, 25)
  visited = order[weight > 0]
  assert sorted(visited.tolist()) == list(range(103))
  assert weight.sum() == 103


def test_checkpoints_and_step_budget(digits):
  x, y = digits.train.x[:100], digits.train.y[:100]
  config = TrainConfig(epochs=3, batch_size=32)
  models = train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model="linear", seeds=[0], training=config),
    checkpoint_epochs=[0, 2],
    progress=False,
  )
  assert sorted(models.checkpoints) == [0, 2]
  assert models.num_steps == 3 * steps_per_epoch(100, 32)
  init = _flat(nnx.to_pure_dict(models.checkpoints[0][0]))
  final = _flat(nnx.to_pure_dict(models.state[0]))
  assert not np.allclose(init["head/kernel"], final["head/kernel"])
  # A smaller set trained for a fixed number of steps takes exactly that many.
  models = train_models(
    pruning.TrainData(x=x[:30], y=y[:30], num_classes=10),
    pruning.ModelSpec(model="linear", seeds=[0], training=config),
    num_steps=10,
    progress=False,
  )
  assert models.num_steps == 10
  assert len(models.loss_history) == 10  # one step per epoch: 30 examples, batch 30


def test_train_config_rejects_bad_values():
  from pruning import UserError

  with pytest.raises(UserError, match="did you mean 'adam'"):
    TrainConfig(optimizer="adma")
  with pytest.raises(UserError, match="epochs"):
    TrainConfig(epochs=0)


def test_training_on_rows_equals_training_on_the_subset(digits):
  x, y = digits.train.x, digits.train.y
  rows = np.sort(np.random.default_rng(0).choice(len(y), 150, replace=False))
  config = TrainConfig(epochs=2, batch_size=32)
  from pruning.data import Normalizer

  normalizer = Normalizer.fit(x)
  on_rows = train_models(
    pruning.TrainData(x=x, y=y, rows=rows, num_classes=10, normalizer=normalizer),
    pruning.ModelSpec(model="linear", seeds=[2], training=config),
    progress=False,
  )
  on_subset = train_models(
    pruning.TrainData(x=x[rows], y=y[rows], num_classes=10, normalizer=normalizer),
    pruning.ModelSpec(model="linear", seeds=[2], training=config),
    progress=False,
  )
  np.testing.assert_array_equal(on_rows.logits(x[:50]), on_subset.logits(x[:50]))


def test_each_seed_on_its_own_rows_equals_separate_runs(digits):
  """(S, n) rows: seed s trains on rows[s], all seeds in one program, as S runs of one seed would."""
  from pruning.data import Normalizer

  x, y = digits.train.x, digits.train.y
  rng = np.random.default_rng(0)
  rows = np.stack([np.sort(rng.choice(len(y), 120, replace=False)) for _ in range(3)])
  config = TrainConfig(epochs=2, batch_size=32)
  normalizer = Normalizer.fit(x)
  spec = pruning.ModelSpec(model="mlp", options={"hidden": [16]}, seeds=[5, 6, 7], training=config)
  together = train_models(
    pruning.TrainData(x=x, y=y, rows=rows, num_classes=10, normalizer=normalizer),
    spec,
    dynamics_window=None,
    progress=False,
  )
  logits = together.logits(x[:60])
  for position, seed in enumerate([5, 6, 7]):
    alone = train_models(
      pruning.TrainData(x=x, y=y, rows=rows[position], num_classes=10, normalizer=normalizer),
      pruning.ModelSpec(model="mlp", options={"hidden": [16]}, seeds=[seed], training=config),
      dynamics_window=None,
      progress=False,
    )
    np.testing.assert_allclose(logits[position], alone.logits(x[:60])[0], rtol=1e-5, atol=1e-5)
  for bad, message in [
    (dict(rows=rows[:2]), "2 row sets for 3 seeds"),
    (dict(rows=rows, balance=pruning.training.ClassBalance(sampling="undersample")), "one set of rows"),
  ]:
    with pytest.raises(pruning.UserError, match=message):
      train_models(pruning.TrainData(x=x, y=y, num_classes=10, **bad), spec, dynamics_window=None, progress=False)
  with pytest.raises(pruning.UserError, match="dynamics_window=None"):
    train_models(pruning.TrainData(x=x, y=y, rows=rows, num_classes=10), spec, progress=False)


@pytest.mark.slow
def test_each_seed_on_its_own_rows_of_text_groups_them_by_their_own_lengths():
  """Token ids: each seed's batches are grouped by its own rows' lengths, as a run of that seed alone."""
  data = pruning.load_dataset("synthtext", vocab_size=128, max_length=24)
  x, y = data.train.x, data.train.y
  rng = np.random.default_rng(1)
  rows = np.stack([np.sort(rng.choice(len(y), 64, replace=False)) for _ in range(2)])
  spec = pruning.ModelSpec(
    model="transformer",
    options={"hidden": 8, "mlp": 16, "layers": 1, "heads": 2},
    seeds=[0, 1],
    training=TrainConfig(epochs=1, batch_size=32),  # 2 steps a seed: at most 2 trimmed widths to compile
  ).for_data(data)
  lengths = data.sequence_lengths()
  assert len(np.unique(lengths[rows])) > 4  # batches of several trimmed widths
  together = train_models(pruning.TrainData.from_dataset(data, rows=rows), spec, dynamics_window=None, progress=False)
  for position, seed in enumerate([0, 1]):
    alone = train_models(
      pruning.TrainData.from_dataset(data, rows=rows[position], normalizer=together.normalizer),
      pruning.ModelSpec(model=spec.model, options=spec.options, seeds=[seed], training=spec.training),
      dynamics_window=None,
      progress=False,
    )
    np.testing.assert_allclose(
      np.asarray(together.loss_history)[:, position], np.asarray(alone.loss_history)[:, 0], rtol=1e-5
    )
    np.testing.assert_allclose(together.logits(x[:40])[position], alone.logits(x[:40])[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model,options", [("mlp", {"hidden": [16]}), ("cnn", {"channels": [4, 6], "dense": 12})])
def test_unoptimised_initialisation_gives_each_seeds_initialiser_values(model, options):
  import jax

  from pruning.models import create_model
  from pruning.training import init_models

  seeds = [0, 3]
  _, (params, _) = init_models(model, options, input_shape=(8, 8, 1), num_classes=10, seeds=seeds)
  for i, seed in enumerate(seeds):
    # eager, per seed: the initialisers' own values, computed without the vmapped program
    eager = nnx.state(
      create_model(model, input_shape=(8, 8, 1), num_classes=10, rngs=nnx.Rngs(jax.random.key(seed)), **options),
      nnx.Param,
    )
    for (path, ours), (_, reference) in zip(nnx.to_flat_state(params), nnx.to_flat_state(eager)):
      np.testing.assert_allclose(
        np.asarray(ours[...])[i], np.asarray(reference[...]), rtol=1e-6, atol=1e-7, err_msg=str(path)
      )
