"""Selection at scale: every strategy x class rule on a synthetic manifest.

Builds a manifest of N rows (default 10 million) over C classes (default
1,000, with long-tailed class sizes so caps and overflow matter), then times
`pruning.select(keep=0.3)` for every strategy with every class rule, against
one `numpy.argsort` of the score column timed in the same run (the floor any
ranking pays). Peak memory is measured separately with tracemalloc (numpy
reports its buffers to it) as the extra memory `select` allocates, against the
manifest's in-memory size (`DataFrame.memory_usage(deep=True)`).

    python benchmarks/selection.py                   # 10M rows, 1,000 classes
    python benchmarks/selection.py --rows 1000000    # a quicker look

Prints a Markdown table; targets: time <= 3x argsort, peak <= 3x manifest.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd

STRATEGIES = ("hardest", "easiest", "random", "offset", "ccs", "probabilistic")
CLASS_RULES = ("global", "proportional", "balanced", "drop")


def synthetic_manifest(rows: int, classes: int, seed: int = 0):
  from pruning.manifest import FORMAT, Manifest

  rng = np.random.default_rng(seed)
  # Class sizes fall off exponentially (ratio 100 between largest and smallest).
  weights = 100.0 ** (-np.arange(classes) / (classes - 1))
  labels = rng.choice(classes, size=rows, p=weights / weights.sum())
  score = rng.gamma(2.0, size=rows) + labels * 1e-3
  table = pd.DataFrame(
    {
      "example_id": pd.array(np.char.add("ex", np.arange(rows).astype(str)), dtype="string"),
      "index": np.arange(rows, dtype=np.int64),
      "label": labels.astype(np.int64),
      "split": pd.array(np.full(rows, "train"), dtype="string"),
      "el2n": score,
      "el2n_std": np.zeros(rows),
      "el2n_seed0": score.astype(np.float32),
    }
  )
  provenance = {
    "format": FORMAT,
    "dataset": {"spec": "synthetic", "fingerprint": "0" * 64},
    "scores": {"el2n": {"harder": "higher", "seeds": [0], "epoch": 1}},
    "validation": {"per_class_recall": rng.uniform(0.5, 0.99, size=classes).tolist()},
  }
  return Manifest(table=table, provenance=provenance)


def timed(function) -> float:
  started = time.perf_counter()
  function()
  return time.perf_counter() - started


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=10_000_000)
  parser.add_argument("--classes", type=int, default=1000)
  parser.add_argument("--keep", type=float, default=0.3)
  parser.add_argument(
    "--memory",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="also measure peak memory with tracemalloc (a second pass)",
  )
  args = parser.parse_args()

  from pruning.selection import select

  manifest = synthetic_manifest(args.rows, args.classes)
  manifest_bytes = int(manifest.table.memory_usage(deep=True).sum())
  scores = manifest.table["el2n"].to_numpy()
  print(
    f"{args.rows:,} rows, {args.classes} classes, keep {args.keep}; manifest {manifest_bytes / 2**20:.0f} MiB in memory"
  )
  argsort = min(timed(lambda: np.argsort(scores)) for _ in range(3))
  print(f"numpy.argsort of the score column: {argsort:.3f} s (best of 3)\n")
  print("| strategy | class rule | seconds | x argsort | peak extra MiB | x manifest |")
  print("|---|---|---:|---:|---:|---:|")
  worst_time = worst_memory = 0.0
  for strategy in STRATEGIES:
    for rule in CLASS_RULES:

      def run():
        return select(manifest, keep=args.keep, strategy=strategy, class_rule=rule, score="el2n", seed=1)

      seconds = timed(run)
      peak = float("nan")
      if args.memory:
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
      worst_time = max(worst_time, seconds / argsort)
      worst_memory = max(worst_memory, peak / manifest_bytes)
      print(
        f"| {strategy} | {rule} | {seconds:.3f} | {seconds / argsort:.2f} | {peak / 2**20:.0f} |"
        f" {peak / manifest_bytes:.2f} |",
        flush=True,
      )
  print(f"\nworst: {worst_time:.2f}x argsort, {worst_memory:.2f}x the manifest's memory")


if __name__ == "__main__":
  main()
