"""A training step summed over micro-batches is the same step."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

import pruning
from pruning import training
from pruning.training import TrainConfig
from pruning.training import step as training_step


def train(x, y, monkeypatch, micro):
  monkeypatch.setattr("pruning.training.loop.plan_micro_batches", lambda *args, **kwargs: micro)
  return pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(
      model="cnn",
      options={"channels": [4, 6], "dense": 12},
      seeds=[0, 1],
      training=TrainConfig(epochs=2, batch_size=24),
    ),
    progress=False,
  )


@pytest.mark.slow
@pytest.mark.parametrize("mapped", [False, True])  # inputs on the device / gathered on the host per step
def test_micro_batches_give_the_same_models_and_dynamics(digits, monkeypatch, tmp_path, mapped):
  x, y = digits.train.x[:60], digits.train.y[:60]  # 60 rows: the last batch is padded
  if mapped:
    stored = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=x.dtype, shape=x.shape)
    stored[:] = x
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
  whole = train(x, y, monkeypatch, None)
  for micro in (training.MicroBatches(rows=8), training.MicroBatches(rows=12, seeds=1)):
    split = train(x, y, monkeypatch, micro)
    for a, b in zip(nnx.to_flat_state(whole.state[0]), nnx.to_flat_state(split.state[0])):
      np.testing.assert_allclose(np.asarray(a[1][...]), np.asarray(b[1][...]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(whole.loss_history, split.loss_history, rtol=1e-5)
    for name in whole.dynamics:
      np.testing.assert_allclose(whole.dynamics[name], split.dynamics[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_micro_batches_divide_the_batch_and_skip_batch_statistics(monkeypatch):
  # BatchNorm in training mode normalises over its batch: a micro-batch would change the step.
  import jax.numpy as jnp

  graphdef, (params, rest) = training.init_models("cnn", {}, input_shape=(28, 28, 1), num_classes=10, seeds=[0])
  x, y = jnp.zeros((600, 28, 28, 1)), jnp.zeros(600, jnp.int32)
  micro = training.plan_micro_batches(
    graphdef, params, rest, x, y, batch=600, gathered=False, seed_map="vmap", mesh=None
  )
  assert micro.seeds is None and 600 % micro.rows == 0 and micro.rows < 600  # a CNN step at 600 rows is over budget
  _, _, norm_rest = nnx.split(nnx.BatchNorm(4, rngs=nnx.Rngs(0)), nnx.Param, ...)
  assert training_step._has_batch_statistics(norm_rest) and not training_step._has_batch_statistics(rest)
  monkeypatch.setattr(training_step, "_has_batch_statistics", lambda rest: True)
  training_step._MICRO_ROWS.clear()
  assert (
    training.plan_micro_batches(graphdef, params, rest, x, y, batch=600, gathered=False, seed_map="vmap", mesh=None)
    is None
  )


@pytest.mark.slow
def test_many_seeds_get_calls_of_their_own():
  import jax.numpy as jnp

  graphdef, (params, rest) = training.init_models("cnn", {}, input_shape=(28, 28, 1), num_classes=10, seeds=range(10))
  x, y = jnp.zeros((256, 28, 28, 1)), jnp.zeros(256, jnp.int32)
  micro = training.plan_micro_batches(
    graphdef, params, rest, x, y, batch=128, gathered=False, seed_map="unroll", mesh=None
  )
  assert micro.seeds == 1 and 128 % micro.rows == 0  # ten seeds' temporaries at 8 rows are over budget
