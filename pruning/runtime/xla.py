"""XLA CPU settings the project applies by default, chosen from measurements.

XLA's experimental YNNPACK fusions on CPU speed up matrix products and
forward passes (the zoo's CNN forward 3-5x) but slow down the convolutions of
a training step (a vmapped 10-seed CNN trained 3.3x slower with XLA's default
list; benchmarks/RESULTS.md). So `import pruning` keeps YNNPACK for dot
products only (`LIBRARY_FUSION_TYPE_DOT`), which measured as fast as no
fusions for training and as fast as XLA's default for forward passes, unless:

- `XLA_FLAGS` already sets `xla_cpu_experimental_ynn_fusion_type` (yours wins);
- `PRUNING_KEEP_XLA_FLAGS=1` is set;
- the installed jaxlib is outside the versions where the flag was measured
  (XLA aborts on flags it does not know).

Transformer encoders (`transformer`, `bert`) measured faster with no YNNPACK
fusions at all: a forward pass 2x, a training step 1.2x and exact GraNd 1.3x
(benchmarks/RESULTS.md, "Text"). `apply_xla_defaults(model=NAME)` picks that
setting for them; the `pruning` command passes the model it will train.

XLA reads `XLA_FLAGS` when its CPU backend starts, so this only takes effect
when `pruning` is imported before the first JAX computation.
"""

from __future__ import annotations

import os

YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
YNN_OFF = f"--{YNN_FLAG}="
# Named settings the benchmarks compare: "on" is XLA's default list.
YNN_SETTINGS = {"on": "", "off": YNN_OFF, "dot": f"--{YNN_FLAG}=LIBRARY_FUSION_TYPE_DOT"}
DEFAULT_YNN = "dot"
MODEL_YNN = {"transformer": "off", "bert": "off"}


def xla_flags_with_ynn(setting: str, flags: str) -> str:
  """`flags` with its YNN fusion flag replaced by the named setting's."""
  kept = [flag for flag in flags.split() if YNN_FLAG not in flag]
  return " ".join([*kept, YNN_SETTINGS[setting]]).strip()


MEASURED_JAXLIB = ((0, 10),)

# Per-program compiler options for CPU programs whose compile time matters more than their speed
# (one-off initialisers, sizing probes): LLVM's optimisations off. XLA's own passes (fusion, layouts,
# buffer assignment) still run, so temporaries and values are the optimised program's.
UNOPTIMISED = {"xla_backend_optimization_level": 0}


def _jaxlib_minor() -> tuple[int, int] | None:
  try:
    from importlib.metadata import version

    major, minor = version("jaxlib").split(".")[:2]
    return int(major), int(minor)
  except Exception:  # no jaxlib or an unusual version string: leave XLA alone
    return None


def apply_xla_defaults(model: str | None = None) -> bool:
  """Adds the project's XLA CPU flags to `XLA_FLAGS` (for `model`, where it
  was measured to want others); returns whether it did."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("PRUNING_KEEP_XLA_FLAGS") == "1" or YNN_FLAG in flags:
    return False
  if _jaxlib_minor() not in MEASURED_JAXLIB:
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_SETTINGS[MODEL_YNN.get(model or '', DEFAULT_YNN)]}".strip()
  return True
