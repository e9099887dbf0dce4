"""How many examples at a time exact TracIn forms a convolution's per-example gradient blocks:
the CNN's per-example representations and the whole influence matrix, with the blocks formed
16 rows at a time in a loop (`ghost_products.BLOCK_ROWS`, the default) against the whole batch at
once, alternating in one process (the machine is shared: medians of alternating runs).

    python benchmarks/tracin_block_rows.py [--rows 256] [--repeats 7]

The CNN of `benchmarks/influence.py` (conv 32, pool, conv 64, pool, dense 128, head) on random
28x28x1 inputs, one seed, the `pruning` command's XLA flags; the matrix is 2,000 x 1,000.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  import pruning

  pruning.apply_xla_defaults()
  import jax
  import jax.numpy as jnp

  sys.path.insert(0, str(Path(__file__).resolve().parent))
  from influence import _data, _train

  from pruning.scores import ghost_products as products
  from pruning.scores import tracin

  default = products.BLOCK_ROWS
  settings = {f"{default} rows at a time": default, "the whole batch at once": 1 << 30}
  train_x, train_y = _data(2000, 0)
  test_x, test_y = _data(1000, 1)
  models = _train("cnn", train_x, train_y, 1)
  params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.state_at(1))
  inputs = jnp.asarray(models.normalizer(train_x[: args.rows]))
  labels = jnp.asarray(train_y[: args.rows].astype(np.int32))

  representations = {}
  for name, rows in settings.items():
    products.BLOCK_ROWS = rows  # read when the program is traced
    representations[name] = (
      jax.jit(lambda p, r, x, y: products.gradient_representations(models.graphdef, p, r, x, y, {}))
      .lower(params, rest, inputs, labels)
      .compile()
    )

  # Each setting keeps its own compiled programs: TracIn's program factories, cached per setting.
  factories = {
    name: (
      functools.lru_cache(tracin._representations.__wrapped__),
      functools.lru_cache(tracin._train_products.__wrapped__),
    )
    for name in settings
  }

  def influence(name):
    products.BLOCK_ROWS = settings[name]  # read when a program is first traced
    tracin._representations, tracin._train_products = factories[name]
    start = time.perf_counter()
    tracin.influence_matrix(models, train_x, train_y, test_x, test_y, epochs=[1], learning_rates=[1.0])
    return time.perf_counter() - start

  times: dict = {name: ([], []) for name in settings}
  for name in settings:
    jax.block_until_ready(representations[name](params, rest, inputs, labels))
    influence(name)  # compiles
  for _ in range(args.repeats):
    for name in settings:
      start = time.perf_counter()
      jax.block_until_ready(representations[name](params, rest, inputs, labels))
      times[name][0].append(time.perf_counter() - start)
  for _ in range(max(1, args.repeats // 2)):
    for name in settings:
      times[name][1].append(influence(name))
  print(f"| blocks formed | representations, ms per {args.rows} rows | influence 2,000 x 1,000 (s) |")
  print("|---|---:|---:|")
  for name, (reps, whole) in times.items():
    print(f"| {name} | {np.median(reps) * 1e3:.1f} | {np.median(whole):.2f} |")
  products.BLOCK_ROWS = default


if __name__ == "__main__":
  main()
