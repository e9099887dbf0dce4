"""`pruning.models.pooling.max_pool` against flax's `nnx.max_pool` (XLA's reduce_window)."""

import jax
import numpy as np
import pytest
from flax import nnx

from pruning.models.pooling import max_pool


@pytest.mark.parametrize(
  "shape, window",
  [
    ((3, 28, 28, 4), (2, 2)),
    ((3, 7, 9, 2), (2, 2)),  # odd sizes: the last row and column fill no window
    ((2, 41, 3), (2,)),  # 1-D signals (mnist1d)
    ((2, 9, 9, 1), (3, 3)),
    ((2, 4, 6, 4, 2), (2, 3, 2)),
  ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_value_and_gradient_equal_flax_max_pool(shape, window, ties):
  rng = np.random.default_rng(0)
  # Small integers make many windows hold tied maxima: the gradient must go
  # to the first of them in row-major order, as XLA's select_and_scatter does.
  h = (rng.integers(0, 3, size=shape) if ties else rng.normal(size=shape)).astype(np.float32)
  reference = nnx.max_pool(h, window, strides=window)
  pooled = max_pool(h, window)
  np.testing.assert_array_equal(pooled, reference)
  weights = rng.normal(size=reference.shape).astype(np.float32)
  expected = jax.grad(lambda h: (nnx.max_pool(h, window, strides=window) * weights).sum())(h)
  got = jax.grad(lambda h: (max_pool(h, window) * weights).sum())(h)
  np.testing.assert_array_equal(got, expected)
  if ties:  # each window passes its gradient to exactly one element
    ones = jax.grad(lambda h: max_pool(h, window).sum())(h)
    assert ones.sum() == reference.size


def test_per_example_gradients_under_vmap():
  rng = np.random.default_rng(1)
  h = rng.integers(0, 2, size=(5, 6, 6, 3)).astype(np.float32)
  per_example = lambda f: jax.vmap(jax.grad(lambda e: (f(e[None]) ** 2).sum()))(h)
  np.testing.assert_array_equal(
    per_example(lambda e: max_pool(e, (2, 2))), per_example(lambda e: nnx.max_pool(e, (2, 2), strides=(2, 2)))
  )


def test_window_must_match_the_spatial_rank():
  with pytest.raises(ValueError, match="does not match"):
    max_pool(np.zeros((1, 4, 4, 1), np.float32), (2,))
