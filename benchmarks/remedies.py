"""What an imbalance remedy costs: training time against no remedy, and SMOTE against imbalanced-learn.

1. Training: `train_models` on the same long-tailed data for the same number
   of steps under each remedy's `ClassBalance` (oversampling, undersampling,
   reweighting, the logit-adjusted loss), interleaved over rounds, for the
   zoo's MLP and CNN; the table gives the median time over rounds and its
   ratio to no remedy. The remedies add host-side work (drawing each epoch's
   rows, a weight per example) and, for the logit-adjusted loss, one add in
   the compiled step.
2. SMOTE: `pruning`'s `smote` remedy (standardise, flatten, imbalanced-learn's
   SMOTE, back to float32) against `imblearn.over_sampling.SMOTE` called
   directly on the same standardised float32 array, on ROWS x 64 features
   with a 5% minority: time and peak resident memory, each in its own process.

    python benchmarks/remedies.py
    python benchmarks/remedies.py --rounds 5 --smote-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import pruning

REMEDIES = ("none", "oversample", "undersample", "reweight", "logit_adjust")


def long_tailed(model: str, n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  counts = np.maximum((n * 0.5 ** np.arange(10) / 2).astype(int), 8)  # an exponential profile, r = 256
  y = np.repeat(np.arange(10), counts)
  shape = (28, 28, 1) if model == "cnn" else (784,)
  x = rng.normal(size=(len(y), *shape)).astype(np.float32) + y.reshape(-1, *[1] * len(shape)) * 0.1
  return x, y


def time_training(model: str, remedy: str, x, y, *, steps: int, batch: int) -> float:
  from pruning.retraining.remedies import REMEDIES as REGISTRY
  from pruning.retraining.remedies import RemedyOptions
  from pruning.training import TrainConfig, train_models

  rows = np.arange(len(y))
  normalizer = pruning.Normalizer.fit(x)
  plan = REGISTRY[remedy].prepare(x, y, rows, num_classes=10, normalizer=normalizer, options=RemedyOptions())
  options = {"hidden": [512, 512]} if model == "mlp" else {}
  start = time.perf_counter()
  train_models(
    pruning.TrainData(x=x, y=y, num_classes=10, normalizer=normalizer, balance=plan.balance),
    pruning.ModelSpec(model=model, options=options, seeds=[0], training=TrainConfig(batch_size=batch)),
    num_steps=steps,
    progress=False,
    dynamics_window=None,
  )
  return time.perf_counter() - start


def training_table(rounds: int, examples: int, steps: int, batch: int) -> None:
  print(f"Training for {steps} steps at batch {batch} on {examples:,}-ish long-tailed examples, median of {rounds}:\n")
  print("| model | remedy | seconds | x no remedy |")
  print("|---|---|---|---|")
  for model in ("mlp", "cnn"):
    x, y = long_tailed(model, examples)
    for remedy in REMEDIES:  # compile every program once
      time_training(model, remedy, x[:512], y[:512], steps=4, batch=batch)
    times: dict[str, list[float]] = {r: [] for r in REMEDIES}
    for _ in range(rounds):
      for remedy in REMEDIES:
        times[remedy].append(time_training(model, remedy, x, y, steps=steps, batch=batch))
    base = statistics.median(times["none"])
    for remedy in REMEDIES:
      median = statistics.median(times[remedy])
      print(f"| {model} | {remedy} | {median:.2f} | {median / base:.3f} |")


def smote_once(which: str, rows: int) -> dict:
  from imblearn.over_sampling import SMOTE

  from pruning.retraining.remedies import REMEDIES as REGISTRY
  from pruning.retraining.remedies import RemedyOptions

  rng = np.random.default_rng(0)
  y = (rng.random(rows) < 0.05).astype(np.int64)
  x = (rng.normal(size=(rows, 64)) + y[:, None]).astype(np.float32)
  normalizer = pruning.Normalizer.fit(x)
  start = time.perf_counter()
  if which == "pruning":
    plan = REGISTRY["smote"].prepare(
      x, y, np.arange(rows), num_classes=2, normalizer=normalizer, options=RemedyOptions()
    )
    made = len(plan.x)
  else:
    x_out, _ = SMOTE(random_state=0).fit_resample(normalizer(x), y)
    made = len(x_out)
  seconds = time.perf_counter() - start
  return {
    "which": which,
    "rows_out": made,
    "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }


def smote_table(rows: int) -> None:
  print(f"\nSMOTE on {rows:,} rows x 64 features, 5% minority (each in its own process):\n")
  print("| implementation | rows out | seconds | peak RSS (MB) |")
  print("|---|---|---|---|")
  for which in ("imblearn", "pruning"):
    out = subprocess.run(
      [sys.executable, __file__, "--smote-child", which, "--smote-rows", str(rows)],
      capture_output=True,
      text=True,
      check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    name = "imbalanced-learn's SMOTE, direct" if which == "imblearn" else "pruning's smote remedy"
    print(f"| {name} | {result['rows_out']:,} | {result['seconds']:.1f} | {result['peak_rss_mb']:.0f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--examples", type=int, default=4096)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--smote-rows", type=int, default=1_000_000)
  parser.add_argument("--smote-child", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--skip-training", action="store_true")
  args = parser.parse_args()
  if args.smote_child:
    print(json.dumps(smote_once(args.smote_child, args.smote_rows)))
    return
  pruning.apply_xla_defaults()
  if not args.skip_training:
    training_table(args.rounds, args.examples, args.steps, args.batch)
  smote_table(args.smote_rows)


if __name__ == "__main__":
  main()
