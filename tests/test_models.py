"""Every model builds on 1-D signals and images and keeps examples independent."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pruning
from pruning.models import model_options


@pytest.mark.parametrize("name,options", [("linear", {}), ("mlp", {"hidden": [8]}),
                                          ("cnn", {"channels": [4, 8], "dense": 16}),
                                          ("resnet18", {"width": 4})])
@pytest.mark.parametrize("shape", [(12,), (8, 8, 1), (6, 6, 3)])
def test_model_outputs_and_per_example_independence(name, options, shape):
  model = pruning.create_model(name, input_shape=shape, num_classes=5, rngs=nnx.Rngs(0), **options)
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
