"""How close to this CPU's peak do a training step and exact GraNd run?

In one run: this machine's float32 matrix-product rate (a 2048 x 2048 product,
best of 5: the practical peak), then for `mlp` (784-512-512-10) and `cnn` at
one batch size the floating-point work per example of one training step and
of exact GraNd by ghost norms, as XLA's cost analysis counts it for each
compiled program, and their measured examples per second (each in its own
process, as `benchmarks/scores.py` measures them). Prints achieved GFLOP/s,
the fraction of the peak, and the examples per second that the peak would
allow: the ceiling for any implementation that does the same work.

    python benchmarks/roofline.py
    python benchmarks/roofline.py --models cnn --batch 2048
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from timing import seconds_per_call

import pruning

pruning.apply_xla_defaults()  # the project's XLA CPU settings, before JAX starts


SCORES = Path(__file__).with_name("scores.py")


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
  a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32))
  product = jax.jit(lambda a: a @ a)
  best = min(seconds_per_call(product, a, repeats=3) for _ in range(repeats))
  return 2 * size**3 / best / 1e9


def flops_per_example(model: str, batch: int) -> dict[str, float]:
  """XLA's count for one compiled training step and one ghost-GraNd call on `batch` rows, per example."""
  from pruning.scores.grand import _ghost_grad_norms
  from pruning.training import TrainConfig, init_models, train_step_programs
  from pruning.training import mesh as sharding

  options = {"hidden": [512, 512]} if model == "mlp" else {}
  graphdef, (params, rest) = init_models(model, options, input_shape=(28, 28, 1), num_classes=10, seeds=[0])
  seed_map = sharding.seed_map(params, "unroll")
  x, y = jnp.zeros((batch, 28, 28, 1)), jnp.zeros(batch, jnp.int32)
  step, init_opt = train_step_programs(graphdef, TrainConfig(batch_size=batch), 10, False, seed_map)
  rows, weights = jnp.arange(batch, dtype=jnp.int32)[None], jnp.ones((1, batch))

  def count(lowered):
    analysis = lowered.compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"]) / batch

  return {
    "train_step": count(step.lower(params, rest, init_opt(params), x, y, rows, weights)),
    "grand_ghost": count(_ghost_grad_norms(graphdef, seed_map).lower(params, rest, x, y)),
  }


def examples_per_second(model: str, batch: int, method: str, repeats: int) -> float:
  out = subprocess.run(
    [sys.executable, str(SCORES), "--worker", model, str(batch), method, "--repeats", str(repeats)],
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(out.stdout.strip().splitlines()[-1])["examples_per_s"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  peak = matmul_peak_gflops()
  print(f"float32 2048x2048 matrix product: {peak:.1f} GFLOP/s\n")
  print(
    "| model | batch | computation | MFLOP per example (XLA) | examples/s | GFLOP/s | of peak | examples/s at peak |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for model in args.models:
    flops = flops_per_example(model, args.batch)
    for method, per_example in flops.items():
      rate = examples_per_second(model, args.batch, method, args.repeats)
      achieved = rate * per_example / 1e9
      print(
        f"| {model} | {args.batch} | {method} | {per_example / 1e6:.2f} | {rate:.0f} | {achieved:.1f} |"
        f" {achieved / peak:.0%} | {peak * 1e9 / per_example:.0f} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
