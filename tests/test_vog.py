"""VoG against a direct computation that stores all K input gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pruning
from pruning.scores.vog import normalize
from pruning.training import TrainConfig


def test_vog_matches_stored_gradients(digits):
  x, y = digits.train.x[:30], digits.train.y[:30]
  config = TrainConfig(epochs=3, batch_size=10)
  manifest = pruning.score_dataset(
    pruning.data.make_dataset("sub", pruning.data.make_split(x, y, None, source="t"), None, num_classes=10),
    model="cnn",
    model_options={"channels": [4], "dense": 8},
    training=config,
    seeds=[0, 1],
    scores=["vog", "vog_dataset", "vog_raw"],
    progress=False,
  )
  models = pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model="cnn", options={"channels": [4], "dense": 8}, seeds=[0, 1], training=config),
    checkpoint_epochs=[1, 2, 3],
    progress=False,
  )
  xn = models.normalizer(x)

  @jax.jit
  def input_gradient(params, rest, xi, label):  # one example's true-class logit, by its input
    return jax.grad(lambda v: nnx.merge(models.graphdef, params, rest)(v[None])[0, label])(xi)

  raw = np.zeros((2, len(y)))
  for s in range(2):
    for i in range(len(y)):
      grads = []
      for epoch in (1, 2, 3):
        params, rest = jax.tree.map(lambda a: jnp.asarray(a[s]), models.checkpoints[epoch])
        grads.append(np.asarray(input_gradient(params, rest, jnp.asarray(xn[i]), y[i]), np.float64).mean(-1))
      raw[s, i] = np.std(np.stack(grads), axis=0).mean()
  np.testing.assert_allclose(manifest.seed_values("vog_raw"), raw, rtol=2e-4, atol=1e-7)
  by_class = manifest.seed_values("vog")
  for c in np.unique(y):
    rows = y == c
    if rows.sum() > 1:
      np.testing.assert_allclose(by_class[:, rows].mean(1), 0, atol=1e-5)
      np.testing.assert_allclose(by_class[:, rows].std(1), 1, atol=1e-4)
  np.testing.assert_allclose(manifest.seed_values("vog_dataset"), normalize(raw, y, "dataset"), rtol=1e-3, atol=1e-4)


def test_vog_at_k_evenly_spaced_checkpoints(digits):
  """K = 2 of 4 epochs reads epochs 2 and 4: the std of two gradients is half their difference."""
  from pruning.scores.vog import checkpoint_epochs

  assert checkpoint_epochs(10, 4) == [3, 5, 8, 10] and checkpoint_epochs(3, None) == [1, 2, 3]
  with pytest.raises(pruning.UserError, match="vog_checkpoints"):
    checkpoint_epochs(3, 5)
  x, y = digits.train.x[:40], digits.train.y[:40]
  config = TrainConfig(epochs=4, batch_size=20)
  data = pruning.data.make_dataset("sub", pruning.data.make_split(x, y, None, source="t"), None, num_classes=10)
  manifest = pruning.score_dataset(
    data,
    model="mlp",
    model_options={"hidden": [16]},
    training=config,
    seeds=[0],
    scores=["vog_raw"],
    vog_checkpoints=2,
    progress=False,
  )
  assert manifest.scores["vog_raw"]["checkpoints"] == [2, 4]
  models = pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model="mlp", options={"hidden": [16]}, seeds=[0], training=config),
    checkpoint_epochs=[2, 4],
    progress=False,
  )
  xn = jnp.asarray(models.normalizer(x))
  grads = []
  for epoch in (2, 4):
    params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.checkpoints[epoch])
    model = nnx.merge(models.graphdef, params, rest)
    grads.append(np.asarray(jax.grad(lambda v: jnp.sum(jnp.take_along_axis(model(v), jnp.asarray(y)[:, None], 1)))(xn)))
  expected = (np.abs(grads[1] - grads[0]) / 2).reshape(len(y), -1).mean(axis=1)
  np.testing.assert_allclose(manifest.seed_values("vog_raw")[0], expected, rtol=2e-4, atol=1e-7)
