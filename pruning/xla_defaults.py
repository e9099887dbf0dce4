"""XLA CPU settings the project applies by default, chosen from measurements.

XLA's experimental YNNPACK fusions on CPU make a vmapped multi-seed CNN train
3.3x slower (10 seeds: 68.4 s with them, 20.6 s without; benchmarks/RESULTS.md),
while MLP training barely changes. Training dominates a pipeline's time, so
`import pruning` turns them off, unless:

- `XLA_FLAGS` already sets `xla_cpu_experimental_ynn_fusion_type` (yours wins);
- `PRUNING_KEEP_XLA_FLAGS=1` is set;
- the installed jaxlib is outside the versions where the flag was measured
  (XLA aborts on flags it does not know).

XLA reads `XLA_FLAGS` when its CPU backend starts, so this only takes effect
when `pruning` is imported before the first JAX computation.
"""

from __future__ import annotations

import os

YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
YNN_OFF = f"--{YNN_FLAG}="
MEASURED_JAXLIB = ((0, 10),)


def _jaxlib_minor() -> tuple[int, int] | None:
  try:
    from importlib.metadata import version

    major, minor = version("jaxlib").split(".")[:2]
    return int(major), int(minor)
  except Exception:  # no jaxlib or an unusual version string: leave XLA alone
    return None


def apply_xla_defaults() -> bool:
  """Adds the project's XLA CPU flags to `XLA_FLAGS`; returns whether it did."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("PRUNING_KEEP_XLA_FLAGS") == "1" or YNN_FLAG in flags:
    return False
  if _jaxlib_minor() not in MEASURED_JAXLIB:
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_OFF}".strip()
  return True
