"""Max pooling's forward and backward: flax's `nnx.max_pool` against ours.

The zoo's CNN pools (B, 28, 28, 32) and (B, 14, 14, 64) activations over
2x2 windows. Both versions are timed in one process on the same arrays,
value plus gradient, after compilation; the ratio is what to read.

    python benchmarks/pooling.py
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from flax import nnx
from timing import seconds_per_call

import pruning
from pruning.models.pooling import max_pool

pruning.apply_xla_defaults()  # the project's XLA CPU settings, before JAX starts


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print("| activations | flax nnx.max_pool value+grad (ms) | ours (ms) | speed-up |")
  print("|---|---|---|---|")
  for shape in ((args.batch, 28, 28, 32), (args.batch, 14, 14, 64)):
    h = jax.device_put(rng.normal(size=shape).astype(np.float32))
    flax_pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))
    ours = lambda h: max_pool(h, (2, 2))
    times = [
      seconds_per_call(jax.jit(jax.value_and_grad(lambda h, f=f: (f(h) ** 2).sum())), h, repeats=args.repeats)
      for f in (flax_pool, ours)
    ]
    print(f"| {shape} | {times[0] * 1e3:.1f} | {times[1] * 1e3:.1f} | {times[0] / times[1]:.1f}x |", flush=True)


if __name__ == "__main__":
  main()
