"""Scoring on 8 simulated CPU devices against 1 device, on the same cores.

Runs the same job (mnist1d, an MLP, 8 proxy seeds, EL2N, margin and AUM) in
two subprocesses, one with `--xla_force_host_platform_device_count=8`, and
reports wall times (a first run that pays compilation, then a second) and
their ratio. On a 2-core CPU no gain is expected: the point is that the
sharded program runs and agrees (see `tests/test_sharding.py`).

    python benchmarks/devices.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

JOB = """
import json, sys, time, jax, numpy as np, pruning
from pruning.training import TrainConfig
data = pruning.load_dataset("mnist1d")
times = []
for _ in range(2):
    started = time.perf_counter()
    manifest = pruning.score_dataset(data, model="mlp", model_options={"hidden": [512, 512]},
                                     training=TrainConfig(epochs=3, batch_size=128), seeds=range(8),
                                     scores=["el2n", "margin", "aum"], progress=False)
    times.append(time.perf_counter() - started)
print(json.dumps({"devices": len(jax.devices()), "seconds": times,
                  "el2n": manifest.table["el2n"].to_numpy().tolist()}))
"""


def run(devices: int) -> dict:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  done = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
  import numpy as np

  one, eight = run(1), run(8)
  gap = float(np.max(np.abs(np.asarray(one["el2n"]) - np.asarray(eight["el2n"]))))
  print("| devices | first run (s, with compilation) | second run (s) |")
  print("|---:|---:|---:|")
  for result in (one, eight):
    print(f"| {result['devices']} | {result['seconds'][0]:.2f} | {result['seconds'][1]:.2f} |")
  print(
    f"\n8 devices / 1 device, second run: {eight['seconds'][1] / one['seconds'][1]:.2f}x the time;"
    f" largest EL2N difference {gap:.2e}"
  )


if __name__ == "__main__":
  main()
