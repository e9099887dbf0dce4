"""S seeds as one compiled program against S sequential single-seed runs.

Measures, in one process and on the same data, the wall time of training S
seeds with one `train_models(seeds=range(S))` call against S calls with one
seed each, after a warm-up that pays every compilation. Prints a Markdown
table of the ratio sequential / together (above 1: one program is faster).

    python benchmarks/seeds.py                      # the project's XLA CPU settings
    python benchmarks/seeds.py --ynn dot off on     # against the others
    python benchmarks/seeds.py --models mlp --seeds 1 4 10

Each XLA setting runs in its own subprocess, since XLA_FLAGS is read once;
PRUNING_KEEP_XLA_FLAGS=1 stops `import pruning` from applying its defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pruning
from pruning.runtime.xla import DEFAULT_YNN, YNN_SETTINGS, xla_flags_with_ynn


def measure(models, seed_counts, epochs, examples):
  import numpy as np

  from pruning.data import load_dataset
  from pruning.training import TrainConfig, train_models

  rows = []
  rng = np.random.default_rng(0)
  for model in models:
    if model == "mlp":
      data = load_dataset("mnist1d")
      x, y = data.train.x[:examples], data.train.y[:examples]
      options = {"hidden": [512, 512]}
    else:  # CIFAR-sized inputs, 32x32x3
      y = rng.integers(0, 10, size=examples)
      x = (rng.normal(size=(examples, 32, 32, 3)) + y[:, None, None, None] * 0.1).astype(np.float32)
      options = {}
    config = TrainConfig(epochs=epochs, batch_size=128)

    def train(seeds):
      start = time.perf_counter()
      train_models(
        pruning.TrainData(x=x, y=y, num_classes=10),
        pruning.ModelSpec(model=model, options=options, seeds=seeds, training=config),
        progress=False,
      )
      return time.perf_counter() - start

    for count in seed_counts:
      train(range(count))  # warm-up: compile the S-seed program
      train([0])  # and the single-seed one
      together = train(range(count))
      alone = sum(train([s]) for s in range(count))
      rows.append(
        {
          "model": model,
          "seeds": count,
          "together_s": round(together, 2),
          "sequential_s": round(alone, 2),
          "ratio": round(alone / together, 2),
        }
      )
      print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
  parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 10])
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--examples", type=int, default=2048)
  parser.add_argument(
    "--ynn",
    nargs="+",
    default=[DEFAULT_YNN],
    choices=sorted(YNN_SETTINGS),
    help="XLA CPU YNNPACK fusions: off, on (XLA's default list), dot (dots only)",
  )
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(args.models, args.seeds, args.epochs, args.examples)))
    return
  print(f"examples={args.examples} epochs={args.epochs} batch=128; ratio = sequential / one program\n")
  print("| XLA flags | model | seeds | one program (s) | sequential (s) | ratio |")
  print("|---|---|---|---|---|---|")
  for setting in args.ynn:
    label = f"YNN fusions {setting}"
    env = dict(
      os.environ, XLA_FLAGS=xla_flags_with_ynn(setting, os.environ.get("XLA_FLAGS", "")), PRUNING_KEEP_XLA_FLAGS="1"
    )
    command = [
      sys.executable,
      __file__,
      "--worker",
      "--models",
      *args.models,
      "--seeds",
      *map(str, args.seeds),
      "--epochs",
      str(args.epochs),
      "--examples",
      str(args.examples),
    ]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    for row in json.loads(out.strip().splitlines()[-1]):
      print(
        f"| {label} | {row['model']} | {row['seeds']} | {row['together_s']} | {row['sequential_s']} | {row['ratio']} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
