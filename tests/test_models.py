"""Every model builds on 1-D signals and images and keeps examples independent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pruning
from pruning.models import model_options
from pruning.training import init_models


@pytest.mark.parametrize(
  "name,options",
  [("linear", {}), ("mlp", {"hidden": [8]}), ("cnn", {"channels": [4, 8], "dense": 16}), ("resnet18", {"width": 4})],
)
@pytest.mark.slow
@pytest.mark.parametrize("shape", [(12,), (8, 8, 1), (6, 6, 3)])
def test_model_outputs_and_per_example_independence(name, options, shape):
  # Built as training builds it (one compiled initialiser) and run compiled without XLA's
  # optimiser: run eagerly, ResNet-18 took 10 s a shape, dispatching its operations one by one.
  graphdef, (params, rest) = init_models(name, options, input_shape=shape, num_classes=5, seeds=[0])
  state = jax.tree.map(lambda a: a[0], (params, rest))

  def model(x):
    apply = jax.jit(lambda state, x: nnx.merge(graphdef, *state)(x))
    return apply.lower(state, x).compile(compiler_options={"xla_backend_optimization_level": 0})(state, x)

  x = np.random.default_rng(0).normal(size=(4, *shape)).astype(np.float32)
  out = np.asarray(model(jnp.asarray(x)))
  assert out.shape == (4, 5) and np.all(np.isfinite(out))
  # An example's logits must not depend on the rest of the batch (no batch statistics).
  alone = np.asarray(model(jnp.asarray(x[:1])))
  np.testing.assert_allclose(out[:1], alone, rtol=1e-4, atol=1e-5)


def test_unknown_model_and_option():
  with pytest.raises(pruning.UserError, match="did you mean 'resnet18'"):
    pruning.create_model("resnet19", input_shape=(4,), num_classes=2, rngs=nnx.Rngs(0))
  with pytest.raises(pruning.UserError, match="did you mean 'hidden'"):
    pruning.create_model("mlp", input_shape=(4,), num_classes=2, rngs=nnx.Rngs(0), hiden=[3])
  assert model_options("mlp") == {"hidden": (256, 256)}


@pytest.mark.slow
def test_a_registered_user_model_gets_every_score(digits):
  from pruning.training import TrainConfig

  class MyNet(nnx.Module):
    def __init__(self, *, input_shape, num_classes, rngs, width=16):
      self.body = nnx.Linear(int(np.prod(input_shape)), width, rngs=rngs)
      self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def features(self, x):
      return nnx.relu(self.body(x.reshape(len(x), -1)))

    def __call__(self, x):
      return self.head(self.features(x))

  pruning.register_model("test_mynet", MyNet)
  with pytest.raises(pruning.UserError, match="taken"):
    pruning.register_model("mlp", MyNet)
  manifest = pruning.score_dataset(
    digits,
    model="test_mynet",
    model_options={"width": 8},
    training=TrainConfig(epochs=1),
    seeds=[0],
    scores=["el2n", "grand", "grand_last_layer", "aum"],
    progress=False,
  )
  assert manifest.provenance["model"] == {"name": "test_mynet", "options": {"width": 8}}
  assert np.all(manifest.table["grand"] >= manifest.table["grand_last_layer"] - 1e-5)


def test_a_model_with_batch_statistics_is_refused_up_front(digits):
  """BatchNorm in training mode made proxy training die with a raw Flax TraceContextError."""
  from flax import nnx

  class WithBatchNorm(nnx.Module):
    def __init__(self, *, input_shape, num_classes, rngs):
      size = int(np.prod(input_shape))
      self.body = nnx.Linear(size, 16, rngs=rngs)
      self.norm = nnx.BatchNorm(16, rngs=rngs)
      self.head = nnx.Linear(16, num_classes, rngs=rngs)

    def features(self, x):
      return nnx.relu(self.norm(self.body(x.reshape(len(x), -1))))

    def __call__(self, x):
      return self.head(self.features(x))

  pruning.register_model("with_batchnorm_test", WithBatchNorm)
  try:
    with pytest.raises(pruning.UserError, match="batch statistics"):
      pruning.score_dataset(
        digits, model="with_batchnorm_test", training=pruning.TrainConfig(epochs=1), seeds=[0], progress=False
      )
  finally:
    pruning.MODELS.unregister("with_batchnorm_test")


def test_batchnorm_in_evaluation_mode_is_still_accepted(digits):
  class Frozen(nnx.Module):
    def __init__(self, *, input_shape, num_classes, rngs):
      self.body = nnx.Linear(int(np.prod(input_shape)), 16, rngs=rngs)
      self.norm = nnx.BatchNorm(16, use_running_average=True, rngs=rngs)
      self.head = nnx.Linear(16, num_classes, rngs=rngs)

    def __call__(self, x):
      return self.head(nnx.relu(self.norm(self.body(x.reshape(len(x), -1)))))

  pruning.register_model("frozen_batchnorm_test", Frozen)
  try:
    manifest = pruning.score_dataset(
      digits, model="frozen_batchnorm_test", training=pruning.TrainConfig(epochs=1), seeds=[0], progress=False
    )
    assert len(manifest) == len(digits.train)
  finally:
    pruning.MODELS.unregister("frozen_batchnorm_test")
