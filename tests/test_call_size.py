"""Calls are sized so that XLA's temporaries stay within the budget."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pruning.runtime.call_size import rows_per_call


def wide(x):  # temporaries of about 9 x 4 KiB per row
  return sum(jnp.sum(jnp.tanh(x * k + 1.0) ** 2) for k in range(9))


def args_for(rows):
  return (np.ones((rows, 1024), np.float32),)


def temp_bytes(rows):
  return jax.jit(wide).lower(*args_for(rows)).compile().memory_analysis().temp_size_in_bytes


def test_rows_fit_the_budget_and_use_it():
  budget = 40 * temp_bytes(8)
  rows = rows_per_call(jax.jit(wide), args_for, most=4096, budget=budget)
  assert rows % 8 == 0 and 8 < rows < 4096
  assert temp_bytes(rows) <= budget * 1.05  # linear in the rows, up to alignment
  assert temp_bytes(2 * rows) > budget  # and not far below it


def test_small_or_over_budget_calls_take_the_most():
  assert rows_per_call(jax.jit(wide), args_for, most=8) == 8
  assert rows_per_call(jax.jit(wide), args_for, most=300, budget=temp_bytes(8) // 2) == 300
  assert rows_per_call(jax.jit(wide), args_for, most=300, budget=10**12) == 300


def test_unoptimised_probes_measure_the_optimised_programs_temporaries():
  """The probes compile without LLVM's optimisations: the temporaries are XLA's buffer
  assignment, made before LLVM, so they are the optimised program's, on a transformer's and
  a CNN's per-example gradients."""
  from flax import nnx

  import pruning
  from pruning.runtime.xla import UNOPTIMISED

  cases = [
    ("transformer", {"hidden": 16, "layers": 1, "heads": 2, "mlp": 24, "vocab_size": 50}, (12,), np.int32),
    ("cnn", {"channels": [4, 6], "dense": 12}, (8, 8, 1), np.float32),
  ]
  for name, options, shape, dtype in cases:
    model = pruning.create_model(name, input_shape=shape, num_classes=3, rngs=nnx.Rngs(0), **options)
    graphdef, state = nnx.split(model)

    def per_example_grads(state, x, graphdef=graphdef):
      loss = lambda state, row: jnp.sum(nnx.merge(graphdef, state)(row[None]) ** 2)
      return jax.vmap(jax.grad(loss), in_axes=(None, 0))(state, x)

    lowered = jax.jit(per_example_grads).lower(state, np.ones((16, *shape), dtype))
    optimised = lowered.compile().memory_analysis().temp_size_in_bytes
    assert lowered.compile(compiler_options=UNOPTIMISED).memory_analysis().temp_size_in_bytes == optimised > 0, name
