"""Where exact TracIn's time goes on the zoo's CNN: a convolution alone, then the
training side's forward pass, its output gradients (forward and backward with
the ghost taps) and its per-example gradient representations (the per-offset
blocks of each convolution), per batch of rows, after compilation.

    python benchmarks/tracin_cnn_parts.py [--rows 256] [--test 1000]

Random 28x28x1 inputs, the CNN of `benchmarks/influence.py` (conv 32, pool,
conv 64, pool, dense 128, head), one seed, the `pruning` command's XLA flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def timed(fn, *args, repeats: int = 5) -> float:
  import jax

  jax.block_until_ready(fn(*args))  # compiles
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=256)
  parser.add_argument("--test", type=int, default=1000, help="test examples the products are taken with")
  args = parser.parse_args()
  import pruning

  pruning.apply_xla_defaults()
  import jax
  import jax.numpy as jnp
  from flax import nnx

  sys.path.insert(0, str(Path(__file__).resolve().parent))
  from influence import _data, _train

  from pruning.scores import ghost_products as products
  from pruning.scores.ghost_norms import output_gradients

  rows = args.rows
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(rows, 14, 14, 32)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 32, 64)) * 0.1, jnp.float32)

  def conv_and_input_gradient(x, w):
    conv = lambda x: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out, vjp = jax.vjp(conv, x)
    return out, vjp(jnp.ones_like(out))[0]

  seconds = timed(jax.jit(conv_and_input_gradient), x, w)
  macs = 2 * rows * 14 * 14 * 9 * 32 * 64
  print(f"second convolution, forward and input gradient: {seconds * 1e3:.1f} ms ({macs / seconds / 1e9:.0f} GMAC/s)")

  train_x, train_y = _data(2000, 0)
  models = _train("cnn", train_x, train_y, 1)
  params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.state_at(1))
  graphdef = models.graphdef
  inputs = jnp.asarray(models.normalizer(train_x[:rows]))
  labels = jnp.asarray(train_y[:rows].astype(np.int32))
  parts = {
    "forward pass": lambda p, r, x, y: nnx.merge(graphdef, p, r)(x),
    "output gradients (forward and backward, tapped)": lambda p, r, x, y: output_gradients(graphdef, p, r, x, y)[0],
    "per-example representations (with the blocks)": lambda p, r, x, y: products.gradient_representations(
      graphdef, p, r, x, y, {}
    ),
  }
  for name, fn in parts.items():
    print(f"{name}: {timed(jax.jit(fn), params, rest, inputs, labels) * 1e3:.1f} ms per {rows} rows")

  # The whole training-side call of `influence_matrix`: representations and their inner products
  # with the test set's. Minus the representations alone, it is the cost of the products.
  test_x, test_y = _data(args.test, 1)
  test_inputs, test_labels = jnp.asarray(models.normalizer(test_x)), jnp.asarray(test_y.astype(np.int32))
  test = jax.jit(parts["per-example representations (with the blocks)"])(params, rest, test_inputs, test_labels)
  train_call = jax.jit(
    lambda p, r, x, y, test: products.inner_products(
      test, products.gradient_representations(graphdef, p, r, x, y, {}), {}
    )
  )
  seconds = timed(train_call, params, rest, inputs, labels, test)
  print(f"representations and their products with {args.test:,} test examples: {seconds * 1e3:.1f} ms per {rows} rows")


if __name__ == "__main__":
  main()
