"""How many rows one call of a jitted function takes, on CPU: few enough that
its temporaries stay under glibc's mmap threshold.

XLA on CPU allocates a call's temporaries with `malloc` on every call. glibc
serves blocks above its mmap threshold (which grows with use up to 32 MiB)
with a fresh `mmap`, so each such call faults in and zero-fills every page of
its temporaries again: a CNN GraNd call on 512 rows (68 MB of temporaries)
took ~28,000 page faults and ran at half the speed of the same work in calls
of 16-48 rows, whose temporaries glibc reuses from its heap
(benchmarks/RESULTS.md, "Rows per call"). So where a computation is split
into calls anyway, CPU calls are sized from the compiled program's own
temporary size to stay under `TEMP_BYTES_PER_CALL`. Other backends, and
programs whose temporaries exceed the budget even at the smallest probe, take
the largest size allowed.

The probes compile with LLVM's optimisations off (`UNOPTIMISED`): a program's
temporaries are laid out by XLA's buffer assignment, before LLVM, so the size
is the optimised program's (checked in tests/test_call_size.py) at about half
the compile time.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from pruning.runtime.xla import UNOPTIMISED

# Under glibc's largest dynamic mmap threshold (32 MiB), with room for the
# call's other allocations.
TEMP_BYTES_PER_CALL = 24 << 20
PROBE_ROWS = 8


def rows_per_call(
  jitted,
  args_for: Callable[[int], tuple],
  *,
  most: int,
  budget: int = TEMP_BYTES_PER_CALL,
  probe: int = PROBE_ROWS,
  over_budget: int | None = None,
) -> int:
  """Rows per call of `jitted(*args_for(rows))`, at most `most`.

  Compiles the program at `probe` and `2 * probe` rows and extends the line
  through their temporary sizes (a fixed part plus a part per row). The
  result is a multiple of `probe`, so it divides evenly over up to `probe`
  devices. A program over the budget even at `probe` rows gets
  `over_budget` (default `most`: larger calls at least amortise the faults).
  """
  if most <= probe or jax.default_backend() != "cpu":
    return most

  def temp_bytes(rows):
    compiled = jitted.lower(*args_for(rows)).compile(compiler_options=UNOPTIMISED)
    return int(compiled.memory_analysis().temp_size_in_bytes)

  try:
    small = temp_bytes(probe)
    if small > budget:
      return most if over_budget is None else over_budget
    if small * -(-most // probe) <= budget:  # scaling all of `small` overestimates, yet fits
      return most
    per_probe = temp_bytes(2 * probe) - small
  except (AttributeError, TypeError):  # no memory analysis on this backend or version
    return most
  if per_probe <= 0:
    return most
  return min(most, probe * (1 + (budget - small) // per_probe))
