"""Three ways to map S proxy seeds on one CPU device: vmap, lax.map, unrolled.

For `mlp` (784-512-512-10) and `cnn` (the zoo's CNN on 28x28x1), S=4 seeds,
one process, the same arrays: a forward pass (batch 1024), exact GraNd by
ghost norms (1024), VoG's input gradient (512) and a plain SGD training step
(128), each mapped over the seeds by `pruning.training.mesh.map_over_seeds` in
the three ways. Prints examples x seeds per second and the ratio to vmap.

    python benchmarks/seed_maps.py
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from timing import seconds_per_call

import pruning
from pruning.scores.ghost_norms import ghost_norms_fn
from pruning.training import init_models
from pruning.training.mesh import SEED_MAPS, map_over_seeds

pruning.apply_xla_defaults()  # the project's XLA CPU settings, before JAX starts


def computations(graphdef):
  def forward(params, rest, x):
    return nnx.merge(graphdef, params, rest)(x)

  def loss(params, rest, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, rest, x), y).mean()

  def train_step(params, rest, x, y):
    grads = jax.grad(loss)(params, rest, x, y)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

  def vog_input_grad(params, rest, x, y):
    true_logits = lambda x: jnp.sum(jnp.take_along_axis(forward(params, rest, x), y[:, None], axis=-1))
    return jax.grad(true_logits)(x)

  return {
    "forward": (forward, 1024),
    "grand_ghost": (ghost_norms_fn(graphdef), 1024),
    "vog_input_grad": (vog_input_grad, 512),
    "train_step": (train_step, 128),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1024, 28, 28, 1)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 10, size=1024), jnp.int32)
  print(f"S={args.seeds}; examples x seeds per second; ratio to vmap\n")
  print("| model | computation | batch | " + " | ".join(SEED_MAPS) + " | loop / vmap | unroll / vmap |")
  print("|---|---|---|" + "---|" * (len(SEED_MAPS) + 2))
  for model in args.models:
    options = {"hidden": [512, 512]} if model == "mlp" else {}
    graphdef, (params, rest) = init_models(
      model, options, input_shape=(28, 28, 1), num_classes=10, seeds=list(range(args.seeds))
    )
    for name, (fn, batch) in computations(graphdef).items():
      inputs = (x[:batch],) if name == "forward" else (x[:batch], y[:batch])
      in_axes = (0, 0) + (None,) * len(inputs)
      rates = {
        how: args.seeds
        * batch
        / seconds_per_call(jax.jit(map_over_seeds(fn, in_axes, how)), params, rest, *inputs, repeats=args.repeats)
        for how in SEED_MAPS
      }
      print(
        f"| {model} | {name} | {batch} | "
        + " | ".join(f"{rates[h]:.0f}" for h in SEED_MAPS)
        + f" | {rates['loop'] / rates['vmap']:.2f} | {rates['unroll'] / rates['vmap']:.2f} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
