"""Throughput and peak memory of each score against a training step, on one batch.

For `mlp` (784-512-512-10) and `cnn` (the zoo's CNN on 28x28x1) at batch 512
and 2048, one subprocess per measurement (so peak resident memory is that
computation's own) times, after compilation, one seed's training step (Adam,
run as `train_models` runs it: on CPU maybe as micro-batches, see
`pruning.training.plan_micro_batches`),
EL2N, exact GraNd by ghost norms, last-layer GraNd and naive `vmap(grad)`
GraNd on the same batch, and prints a Markdown table with examples per
second, the ratio to the training step, and peak RSS of the process.

    python benchmarks/scores.py
    python benchmarks/scores.py --models mlp --batches 512 --ynn off

Each row runs in its own process with the XLA flags of its setting
(PRUNING_KEEP_XLA_FLAGS=1 stops `pruning.apply_xla_defaults()` from changing them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from pruning.runtime.xla import DEFAULT_YNN, YNN_SETTINGS, xla_flags_with_ynn

METHODS = ("train_step", "el2n", "grand_ghost", "grand_last_layer", "grand_vmap", "vog_checkpoint")


def one_seed_train_step(model: str, options: dict, x, y, *, num_classes: int):
  """A call running one seed's Adam step on the whole batch (x, y), as
  `train_models` runs it: seeds mapped, and on CPU maybe split into
  micro-batches. Returns (params, losses) for the caller to wait on."""
  import jax.numpy as jnp
  import numpy as np

  from pruning.training import TrainConfig, build_train_step, init_models, plan_micro_batches, train_step_programs
  from pruning.training import mesh as sharding

  batch = len(y)
  shape = tuple(x.shape[1:])
  graphdef, (params, rest) = init_models(model, options, input_shape=shape, num_classes=num_classes, seeds=[0])
  seed_map = sharding.seed_map(params, "unroll")
  config = TrainConfig(batch_size=batch)
  _, init_opt = train_step_programs(graphdef, config, 10, False, seed_map)
  state = {"p": params, "o": init_opt(params)}
  xd, yd = jnp.asarray(x), jnp.asarray(y, jnp.int32)
  micro = plan_micro_batches(graphdef, params, rest, xd, yd, batch=batch, gathered=False, seed_map=seed_map, mesh=None)
  step = build_train_step(graphdef, config, 10, gathered=False, seed_map=seed_map, mesh=None, batch=batch, micro=micro)
  idx, w = np.arange(batch, dtype=np.int32)[None], np.ones((1, batch), np.float32)

  def call():
    state["p"], state["o"], losses, _ = step(state["p"], rest, state["o"], xd, yd, idx, w)
    return state["p"], losses

  return call


def run_one(model: str, batch: int, method: str, repeats: int) -> dict:
  import jax
  import numpy as np

  import pruning

  pruning.apply_xla_defaults()  # the setting's flags unless PRUNING_KEEP_XLA_FLAGS=1
  from pruning.scores import compute_scores
  from pruning.scores.grand import grand_values
  from pruning.training import TrainConfig

  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, 10, size=batch)
  options = {"hidden": [512, 512]} if model == "mlp" else {}
  models = pruning.train_models(
    pruning.TrainData(x=x[:64], y=y[:64], num_classes=10),
    pruning.ModelSpec(model=model, options=options, seeds=[0], training=TrainConfig(epochs=1, batch_size=64)),
    progress=False,
  )
  if method == "train_step":
    call = one_seed_train_step(model, options, x, y, num_classes=10)
  elif method == "grand_ghost":
    call = lambda: grand_values(models, x, y, method="ghost")  # the product chunks by GHOST_BATCH
  elif method == "grand_vmap":
    call = lambda: grand_values(models, x, y, method="vmap")
  elif method == "vog_checkpoint":  # one checkpoint's update of VoG's running statistics
    from pruning.scores.vog import VoGAccumulator

    vog = VoGAccumulator(x, y)
    params, rest = models.state
    call = lambda: vog(1, models.graphdef, models.normalizer, params, rest)
  else:
    call = lambda: compute_scores(models, x, y, [method], progress=False)
  for _ in range(3):  # compilation, sizing the calls (pruning.runtime.call_size), the heap's warm-up
    jax.block_until_ready(call())
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(call())
  seconds = (time.perf_counter() - start) / repeats
  return {
    "model": model,
    "batch": batch,
    "method": method,
    "examples_per_s": batch / seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
  parser.add_argument("--batches", nargs="+", type=int, default=[512, 2048])
  parser.add_argument("--methods", nargs="+", default=list(METHODS))
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument(
    "--ynn",
    nargs="+",
    default=[DEFAULT_YNN],
    choices=sorted(YNN_SETTINGS),
    help="XLA CPU YNNPACK fusions: off, on (XLA's default list), dot (dots only)",
  )
  parser.add_argument("--worker", nargs=3, metavar=("MODEL", "BATCH", "METHOD"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    model, batch, method = args.worker
    print(json.dumps(run_one(model, int(batch), method, args.repeats)))
    return
  print("| YNN fusions | model | batch | computation | examples/s | x training step | peak RSS (MB) |")
  print("|---|---|---|---|---|---|---|")
  for ynn in args.ynn:
    env = dict(
      os.environ, PRUNING_KEEP_XLA_FLAGS="1", XLA_FLAGS=xla_flags_with_ynn(ynn, os.environ.get("XLA_FLAGS", ""))
    )
    for model in args.models:
      for batch in args.batches:
        base = None
        for method in args.methods:
          out = subprocess.run(
            [sys.executable, __file__, "--worker", model, str(batch), method, "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            env=env,
          )
          if out.returncode:
            print(f"| {ynn} | {model} | {batch} | {method} | failed: {out.stderr.strip().splitlines()[-1][:80]} | | |")
            continue
          row = json.loads(out.stdout.strip().splitlines()[-1])
          base = row["examples_per_s"] if method == "train_step" else base
          ratio = f"{row['examples_per_s'] / base:.2f}" if base else ""
          print(
            f"| {ynn} | {model} | {batch} | {method} | {row['examples_per_s']:.0f} | {ratio} |"
            f" {row['peak_rss_mb']:.0f} |",
            flush=True,
          )


if __name__ == "__main__":
  main()
