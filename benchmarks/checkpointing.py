"""Checkpoint writes against the fraction kept: per epoch (before) and by time (now).

Under the step budget a small subset trains for many short epochs (5% kept:
20x the epochs of the full data, for the same steps). With a checkpoint at
every epoch, its writes and time per step grew with the number of epochs; a
job's checkpointer (`pruning.training.job_checkpointer`) writes at most every
`PRUNING_CHECKPOINT_SECONDS` (120 s) and at the end. This retrains an MLP on
`mnist1d` subsets of each fraction for the same number of steps, once with a
checkpoint per epoch and once by time, in one process, and reports seconds
per step and bytes written by each.

    python benchmarks/checkpointing.py                  # 5% and 50%, 3 seeds
    python benchmarks/checkpointing.py --fractions 0.05 0.2 0.5 --epochs 20

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="mnist1d")
  parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.5])
  parser.add_argument("--epochs", type=int, default=10, help="epochs of the full data; subsets get the same steps")
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args()

  import pruning
  from pruning.training import TrainConfig, TrainingCheckpointer, job_checkpointer

  dataset = pruning.load_dataset(args.data)
  config = TrainConfig(epochs=args.epochs, batch_size=64)
  manifest = pruning.score_dataset(dataset, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False)
  print(f"{args.data}: {len(dataset.train)} examples, MLP, {args.seeds} seeds, {args.epochs} full-data epochs of steps")
  print()
  print("| kept | epochs | checkpoints | saves | MB written | time per step | time per step, no checkpoints |")
  print("|---|---|---|---|---|---|---|")
  for fraction in args.fractions:
    subset = pruning.select(manifest, keep=fraction, strategy="random")
    # A first, untimed run compiles the step for this subset size.
    pruning.retrain(
      dataset,
      subset,
      spec=pruning.ModelSpec(model="mlp", training=config, seeds=list(range(args.seeds))),
      progress=False,
    )
    rows = {}
    for how in ("none", "every epoch", "by time (120 s)"):
      with tempfile.TemporaryDirectory() as folder:
        checkpointer = None
        if how == "every epoch":
          checkpointer = TrainingCheckpointer(os.path.join(folder, "c"))
        elif how.startswith("by time"):
          os.environ.pop("PRUNING_CHECKPOINT_SECONDS", None)
          checkpointer = job_checkpointer(os.path.join(folder, "c"))
        started = time.perf_counter()
        result = pruning.retrain(
          dataset,
          subset,
          spec=pruning.ModelSpec(model="mlp", training=config, seeds=list(range(args.seeds))),
          checkpointer=checkpointer,
          progress=False,
        )
        seconds = time.perf_counter() - started
        saves = 0 if checkpointer is None else checkpointer.saves
        written = 0 if checkpointer is None else checkpointer.bytes_written
        rows[how] = (seconds / result.num_steps, saves, written, result.num_steps)
    plain = rows["none"][0]
    epochs = int(np.ceil(rows["none"][3] / np.ceil(len(subset) / config.batch_size)))
    for how in ("every epoch", "by time (120 s)"):
      per_step, saves, written, _ = rows[how]
      print(
        f"| {fraction:.0%} | {epochs} | {how} | {saves} | {written / 1e6:.1f} | {per_step * 1e3:.2f} ms |"
        f" {plain * 1e3:.2f} ms |"
      )


if __name__ == "__main__":
  main()
