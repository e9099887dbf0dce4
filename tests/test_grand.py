"""GraNd against a per-example loop of `jax.grad`, and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from random_models import random_models

import pruning
from pruning.scores.grand import grand_values


def _one_example_grad(graphdef):
  """Compiled once per model: the gradient of one example's loss (a batch of one, no vmap)."""

  def loss(p, rest, xi, yi):
    logits = nnx.merge(graphdef, p, rest)(xi)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yi)[0]

  return jax.jit(jax.grad(loss))


def loop_reference(models, x, y, *, epoch=None, head_only=False):
  """Per-example gradient norms, one `jax.grad` call per example and seed, summed in float64."""
  params, rest = models.state_at(epoch)
  x = models.normalizer(x)
  grad = _one_example_grad(models.graphdef)
  out = np.zeros((len(models.seeds), len(y)))
  for s in range(len(models.seeds)):
    p_s = jax.tree.map(lambda a: jnp.asarray(a[s]), params)
    r_s = jax.tree.map(lambda a: jnp.asarray(a[s]), rest)
    for i in range(len(y)):
      grads = nnx.to_pure_dict(grad(p_s, r_s, jnp.asarray(x[i : i + 1]), jnp.asarray(y[i : i + 1])))
      leaves = jax.tree.leaves(grads["head"] if head_only else grads)
      out[s, i] = np.sqrt(sum(float(np.sum(np.square(np.asarray(g, np.float64)))) for g in leaves))
  return out


def one_seed_loop(graphdef, params, rest, x, y):
  """Gradient norms of one model's per-example losses, one `jax.grad` call each."""
  grad = _one_example_grad(graphdef)
  out = []
  for i in range(len(y)):
    grads = grad(params, rest, x[i : i + 1], y[i : i + 1])
    out.append(np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads))))
  return np.array(out)


CASES = [
  ("linear", {}, (8, 8, 1)),
  ("mlp", {"hidden": [16, 8]}, (8, 8, 1)),
  ("cnn", {"channels": [4, 6], "dense": 12}, (8, 8, 1)),
  ("resnet18", {"width": 4}, (8, 8, 1)),
]
# The fast tier checks every rule on the small models; ResNet-18 (compiling it takes most of a minute) is slow.
NAMES = [pytest.param(name, marks=pytest.mark.slow) if name == "resnet18" else name for name, _, _ in CASES]


@pytest.fixture(scope="module")
def models_of(digits):
  """(x, y, models): each model built on first use with random weights at epochs 0 and 1.

  The rules hold for any weights, and training would only add a compiled step per model (ResNet-18's
  took longer than its check). Two seeds check the seeds' stacking; ResNet-18 has one, because its
  seeds are unrolled, each another copy of its programs to compile."""
  x, y = digits.train.x[:40], digits.train.y[:40]

  class Models(dict):
    def __missing__(self, name):
      options = dict((n, o) for n, o, _ in CASES)[name]
      seeds = [0] if name == "resnet18" else [0, 1]
      self[name] = random_models(name, options, x, num_classes=10, seeds=seeds, epochs=(0, 1))
      return self[name]

  return x[:12], y[:12], Models()


@pytest.mark.parametrize("name", NAMES)
def test_exact_grand_matches_per_example_loop(models_of, name):
  x, y, models = models_of
  # A small memory budget forces several chunks (the chunking is the same for every model, so
  # ResNet-18, whose every chunk shape compiles for long, is checked in one chunk).
  memory = None if name == "resnet18" else 1 << 16
  for epoch in (None, 0):
    ours = grand_values(models[name], x, y, epoch=epoch, **({} if memory is None else {"memory_bytes": memory}))
    reference = loop_reference(models[name], x, y, epoch=epoch)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_last_layer_grand_matches_head_gradient(models_of, name):
  x, y, models = models_of
  ours = pruning.compute_scores(models[name], x, y, ["grand_last_layer"], progress=False)["grand_last_layer"]
  np.testing.assert_allclose(ours, loop_reference(models[name], x, y, head_only=True), rtol=1e-5, atol=1e-7)


def test_linear_grand_is_el2n_times_input_norm(models_of):
  x, y, models = models_of
  scores = pruning.compute_scores(models["linear"], x, y, ["grand", "el2n"], progress=False)
  x_norm = models["linear"].normalizer(x).reshape(len(x), -1).astype(np.float64)
  expected = scores["el2n"] * np.sqrt((x_norm**2).sum(1) + 1)
  np.testing.assert_allclose(scores["grand"], expected, rtol=1e-5)


# The vmap fallback is generic (`vmap` of `grad`): the small models check it; ResNet-18's rules are
# checked against the per-example loop above.
@pytest.mark.parametrize("name", [name for name, _, _ in CASES if name != "resnet18"])
def test_ghost_norms_equal_the_vmap_fallback(models_of, name):
  x, y, models = models_of
  for epoch in (None, 0):
    fast = grand_values(models[name], x, y, epoch=epoch, method="ghost")
    slow = grand_values(models[name], x, y, epoch=epoch, method="vmap")
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-7)


class UsersModel(nnx.Module):
  """A model a user might bring: embedding, layer norm, conv, eval-mode batch norm."""

  def __init__(self, *, rngs):
    self.embed = nnx.Embed(7, 6, rngs=rngs)
    self.norm = nnx.LayerNorm(6, rngs=rngs)
    self.conv = nnx.Conv(6, 5, (3,), padding="VALID", rngs=rngs)
    self.batch_norm = nnx.BatchNorm(5, use_running_average=True, rngs=rngs)
    self.head = nnx.Linear(5, 3, rngs=rngs)

  def __call__(self, tokens):
    h = self.norm(self.embed(tokens))
    h = nnx.gelu(self.batch_norm(self.conv(h)))
    return self.head(h.mean(axis=1))


def test_ghost_norms_on_a_users_model():
  from pruning.scores.ghost_norms import ghost_norms_fn, supports

  model = UsersModel(rngs=nnx.Rngs(1))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  # Perturb every parameter so that no gradient is trivially zero.
  params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape), params)
  rest = jax.tree.map(lambda a: a + 0.5 if a.dtype == jnp.float32 else a, rest)  # non-trivial running stats
  tokens = jax.random.randint(jax.random.key(3), (9, 8), 0, 7)
  labels = jnp.arange(9) % 3
  assert supports(graphdef, params, rest, tokens)
  fast = np.asarray(jax.jit(ghost_norms_fn(graphdef))(params, rest, tokens, labels))
  np.testing.assert_allclose(fast, one_seed_loop(graphdef, params, rest, tokens, labels), rtol=1e-5)


def test_unsupported_models_fall_back():
  from pruning.scores.ghost_norms import supports

  class Shared(nnx.Module):
    def __init__(self, *, rngs):
      self.layer = nnx.Linear(4, 4, rngs=rngs)
      self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
      return self.head(self.layer(self.layer(x)))

  graphdef, params, rest = nnx.split(Shared(rngs=nnx.Rngs(0)), nnx.Param, ...)
  assert not supports(graphdef, params, rest, jnp.ones((2, 4)))


CONV_GEOMETRIES = [
  ((3, 2), (7, 6), dict(strides=2, padding="SAME")),
  ((3, 2), (7, 6), dict(kernel_dilation=2, padding="VALID")),
  ((3, 2), (7, 6), dict(strides=(1, 2), padding=((1, 0), (2, 1)))),
  ((3,), (20,), dict(strides=2, padding="SAME")),
  ((2, 2, 2), (5, 5, 4), dict(padding="SAME")),
]


@pytest.mark.parametrize("channels", [2, 8])  # im2col patches / one product per kernel offset
@pytest.mark.parametrize(
  "kernel,spatial,kwargs",
  # The fast tier: strided SAME padding on both paths; the other geometries are slow.
  [CONV_GEOMETRIES[0], *(pytest.param(*case, marks=pytest.mark.slow) for case in CONV_GEOMETRIES[1:])],
)
def test_conv_rule_handles_strides_dilation_and_padding(kernel, spatial, kwargs, channels):
  from pruning.scores.ghost_norms import ConvRule, ghost_norms_fn

  class Net(nnx.Module):
    def __init__(self, *, rngs):
      self.conv = nnx.Conv(channels, 3, kernel, rngs=rngs, **kwargs)
      self.head = nnx.Linear(3, 4, rngs=rngs)

    def __call__(self, x):
      return self.head(nnx.tanh(self.conv(x)).mean(axis=tuple(range(1, x.ndim - 1))))

  net = Net(rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  x = jax.random.normal(jax.random.key(1), (5, *spatial, channels))
  y = jnp.arange(5) % 4
  out = net.conv(x)
  assert ConvRule.per_offset(net.conv, ConvRule.record(net.conv, x, out)["inputs"], out) == (channels == 8)
  fast = np.asarray(jax.jit(ghost_norms_fn(graphdef))(params, rest, x, y))
  np.testing.assert_allclose(fast, one_seed_loop(graphdef, params, rest, x, y), rtol=1e-5)
