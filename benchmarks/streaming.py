"""Peak resident memory of `pruning score` on 100k and 1M examples read from disk.

Writes two synthetic `.npz` files (64 float32 features, 10 Gaussian classes,
uncompressed so they are memory-mapped), then runs the same `pruning score`
command on each in a fresh process and reads that process's peak resident set
size (`ru_maxrss` from `wait4`). The features are 25.6 MB and 256 MB; what
must stay flat is everything else. Also runs the Ray backend with 2 local
workers against the plain CLI on the 100k file (`--ray`), with the CLI's
default job (10 epochs, 5 seeds, EL2N).

    SOURCE_DATE_EPOCH=0 python benchmarks/streaming.py [--ray] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 64
CLASSES = 10
# The Ray comparison runs `pruning score`'s defaults (10 epochs, 5 seeds, batch 128).
RAY_JOB = ["--model", "mlp", "--score", "el2n", "--no-progress"]
SCORE = [
  "--model",
  "mlp",
  "--epochs",
  "1",
  "--seeds",
  "2",
  "--batch-size",
  "512",
  "--score",
  "el2n",
  "--score",
  "margin",
  "--no-progress",
]


def write_data(path: Path, n: int, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(CLASSES, FEATURES)).astype(np.float32)
  y = (np.arange(n) % CLASSES).astype(np.int64)
  x = np.empty((n, FEATURES), np.float32)
  for start in range(0, n, 100_000):
    stop = min(start + 100_000, n)
    x[start:stop] = centres[y[start:stop]] + 2.0 * rng.normal(size=(stop - start, FEATURES)).astype(np.float32)
  test_y = (np.arange(1000) % CLASSES).astype(np.int64)
  test_x = centres[test_y] + 2.0 * rng.normal(size=(1000, FEATURES)).astype(np.float32)
  with open(path, "wb") as handle:
    np.savez(handle, x=x, y=y, x_test=test_x, y_test=test_y)


def _status_kib(pid: int, field: str) -> int | None:
  try:
    with open(f"/proc/{pid}/status") as handle:
      for line in handle:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except OSError:
    return None
  return None


def measure(command: list[str]) -> dict:
  """Wall time, peak RSS and peak anonymous memory (MiB) of one command in a fresh process.

  Peak RSS (`ru_maxrss`) counts the file's pages while they are mapped: on
  this kernel (ext4 with large folios) one random read maps a whole folio,
  so it includes page cache the kernel can drop at any time. Peak anonymous
  memory (`RssAnon`, sampled every 10 ms) is what the job itself allocates.
  """
  started = time.perf_counter()
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  peak_anon = 0
  while True:
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if pid:
      break
    anon = _status_kib(process.pid, "RssAnon")
    if anon:
      peak_anon = max(peak_anon, anon)
    time.sleep(0.01)
  seconds = time.perf_counter() - started
  peak_rss = usage.ru_maxrss
  process.returncode = os.waitstatus_to_exitcode(status)
  err = process.stderr.read()
  if process.returncode != 0:
    raise RuntimeError(err)
  return {
    "seconds": round(seconds, 1),
    "peak_rss_mib": round(peak_rss / 1024, 1),
    "peak_anon_mib": round(peak_anon / 1024, 1),
  }


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="100000,1000000")
  parser.add_argument("--ray", action="store_true", help="also time the Ray backend on the first size")
  args = parser.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")]
  results = {}
  with tempfile.TemporaryDirectory() as folder:
    folder = Path(folder)
    for n in sizes:
      data = folder / f"synthetic-{n}.npz"
      write_data(data, n)
      out = folder / f"manifest-{n}.parquet"
      run = measure([sys.executable, "-m", "pruning", "score", "--data", f"npz:{data}", *SCORE, "--out", str(out)])
      results[n] = run
      print(
        f"{n:>9} examples: peak RSS {run['peak_rss_mib']:8.1f} MiB, peak anonymous"
        f" {run['peak_anon_mib']:8.1f} MiB, {run['seconds']:6.1f} s",
        flush=True,
      )
    if len(sizes) > 1:
      first, last = results[sizes[0]], results[sizes[-1]]
      for key, name in [("peak_rss_mib", "peak RSS"), ("peak_anon_mib", "peak anonymous memory")]:
        print(f"{name} growth {sizes[0]} -> {sizes[-1]}: {100 * (last[key] / first[key] - 1):+.1f}%")
    if args.ray:
      data = folder / f"synthetic-{sizes[0]}.npz"
      timings = {}
      for name, extra in [("cli", []), ("ray", ["--backend", "ray", "--num-shards", "2"])]:
        out = folder / f"{name}.parquet"
        timings[name] = measure(
          [sys.executable, "-m", "pruning", "score", "--data", f"npz:{data}", *RAY_JOB, *extra, "--out", str(out)]
        )
      ratio = timings["ray"]["seconds"] / timings["cli"]["seconds"]
      same = (folder / "cli.parquet").read_bytes() == (folder / "ray.parquet").read_bytes()
      print(
        f"Ray (2 local workers) {timings['ray']['seconds']} s vs CLI {timings['cli']['seconds']} s:"
        f" {ratio:.2f}x; manifests identical: {same}"
      )
  print(json.dumps({str(k): v for k, v in results.items()}))


if __name__ == "__main__":
  main()
