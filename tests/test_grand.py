"""GraNd against a per-example loop of `jax.grad`, and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import pruning
from pruning.scores.grand import grand_values
from pruning.training import TrainConfig


def loop_reference(models, x, y, *, epoch=None, head_only=False):
  """Per-example gradient norms, one `jax.grad` call per example and seed."""
  params, rest = models.state_at(epoch)
  x = models.normalizer(x)
  out = np.zeros((len(models.seeds), len(y)))
  for s in range(len(models.seeds)):
    p_s = jax.tree.map(lambda a: jnp.asarray(a[s]), params)
    r_s = jax.tree.map(lambda a: jnp.asarray(a[s]), rest)
    for i in range(len(y)):
      def loss(p):
        logits = nnx.merge(models.graphdef, p, r_s)(jnp.asarray(x[i:i + 1]))
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y[i:i + 1]))[0]

      grads = nnx.to_pure_dict(jax.grad(loss)(p_s))
      leaves = jax.tree.leaves(grads["head"] if head_only else grads)
      out[s, i] = np.sqrt(sum(float(np.sum(np.square(np.asarray(g, np.float64)))) for g in leaves))
  return out


CASES = [("linear", {}, (8, 8, 1)), ("mlp", {"hidden": [16, 8]}, (8, 8, 1)),
         ("cnn", {"channels": [4, 6], "dense": 12}, (8, 8, 1)), ("resnet18", {"width": 4}, (8, 8, 1))]


@pytest.fixture(scope="module")
def trained(digits):
  x, y = digits.train.x[:40], digits.train.y[:40]
  out = {}
  for name, options, _ in CASES:
    out[name] = pruning.train_models(x, y, model=name, model_options=options, num_classes=10, seeds=[0, 1],
                                     config=TrainConfig(epochs=1, batch_size=20), checkpoint_epochs=[0],
                                     progress=False)
  return x[:12], y[:12], out


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_exact_grand_matches_per_example_loop(trained, name):
  x, y, models = trained
  for epoch in (None, 0):
    ours = grand_values(models[name], x, y, epoch=epoch, memory_bytes=1 << 16)  # forces several chunks
    reference = loop_reference(models[name], x, y, epoch=epoch)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_last_layer_grand_matches_head_gradient(trained, name):
  x, y, models = trained
  ours = pruning.compute_scores(models[name], x, y, ["grand_last_layer"], progress=False)["grand_last_layer"]
  np.testing.assert_allclose(ours, loop_reference(models[name], x, y, head_only=True), rtol=1e-5, atol=1e-7)


def test_linear_grand_is_el2n_times_input_norm(trained):
  x, y, models = trained
  scores = pruning.compute_scores(models["linear"], x, y, ["grand", "el2n"], progress=False)
  x_norm = models["linear"].normalizer(x).reshape(len(x), -1).astype(np.float64)
  expected = scores["el2n"] * np.sqrt((x_norm ** 2).sum(1) + 1)
  np.testing.assert_allclose(scores["grand"], expected, rtol=1e-5)
