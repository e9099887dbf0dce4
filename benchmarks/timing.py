"""Timing helper shared by the benchmarks (run them as scripts: `python benchmarks/X.py`)."""

from __future__ import annotations

import time

import jax


def seconds_per_call(fn, *args, repeats: int) -> float:
  """Mean wall time of `fn(*args)` over `repeats` calls, after one warm-up call (compilation)."""
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats
