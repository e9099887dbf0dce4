"""Many devices in one process: the same job on 8 simulated CPU devices gives the
manifest of 1 device (ids and order identical, scores within float tolerance)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import pruning

SCRIPT = """
import sys, jax, numpy as np, pruning
from pruning.training import TrainConfig
assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
data = pruning.load_dataset("digits")
manifest = pruning.score_dataset(data, model="mlp", model_options={"hidden": [64]},
                                 training=TrainConfig(epochs=3, batch_size=64), seeds=range(int(sys.argv[3])),
                                 scores=["el2n", "margin", "aum", "forgetting", "el2n@1", "grand",
                                         "grand_last_layer", "vog"], progress=False)
manifest.to_parquet(sys.argv[1], overwrite=True)
from pruning.training import mesh as sharding
stacked = sharding.place_seeds(np.zeros((int(sys.argv[3]), 2), np.float32), sharding.device_mesh(int(sys.argv[3])))
print("seed map:", sharding.seed_map(stacked, "loop"))
"""


def score_on(devices: int, seeds: int, path) -> pruning.Manifest:
  env = {
    **os.environ,
    # The suite's own XLA flags (see conftest.py), and the device count.
    "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip(),
    "SOURCE_DATE_EPOCH": "1700000000",
  }
  done = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(path), str(devices), str(seeds)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  # Seeds split over devices run vmapped, in parallel; on one device, one after another.
  assert f"seed map: {'vmap' if devices > 1 else 'loop'}" in done.stdout
  return pruning.Manifest.read_parquet(path)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [8, 4])
def test_eight_devices_give_the_single_device_manifest(tmp_path, seeds):
  one = score_on(1, seeds, tmp_path / "one.parquet")
  eight = score_on(8, seeds, tmp_path / "eight.parquet")
  assert eight.table["example_id"].tolist() == one.table["example_id"].tolist()
  assert eight.table["label"].tolist() == one.table["label"].tolist()
  for column in one.scores:
    if column == "forgetting":
      # A count of discrete events: a last-bit difference in a logit near the decision
      # boundary flips one event, so allow a handful of examples to differ.
      assert np.mean(eight.table[column] != one.table[column]) <= 0.005
      continue
    np.testing.assert_allclose(eight.table[column], one.table[column], rtol=1e-4, atol=1e-5, err_msg=column)


def test_mesh_shapes():
  from pruning.training.mesh import device_mesh

  devices = [object()] * 8
  assert device_mesh(10, devices=devices).shape == {"seeds": 2, "data": 4}
  assert device_mesh(8, devices=devices).shape == {"seeds": 8, "data": 1}
  assert device_mesh(3, devices=devices).shape == {"seeds": 1, "data": 8}
  assert device_mesh(5, devices=devices[:1]) is None


@pytest.mark.parametrize("how", ["loop", "unroll"])
def test_seed_maps_agree_with_vmap(how):
  import jax
  import jax.numpy as jnp

  from pruning.training.mesh import map_over_seeds

  def one_seed(w, b, x, scale):  # w, b per seed; x and scale shared
    h = jnp.tanh(x @ w + b)
    return {"out": h * scale, "norm": jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w + b) ** 2))(w)}

  rng = np.random.default_rng(0)
  w, b = rng.normal(size=(3, 4, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
  x = rng.normal(size=(6, 4)).astype(np.float32)
  expected = jax.jit(map_over_seeds(one_seed, (0, 0, None, None), "vmap"))(w, b, x, 2.0)
  got = jax.jit(map_over_seeds(one_seed, (0, 0, None, None), how))(w, b, x, 2.0)
  for key in expected:
    assert got[key].shape == expected[key].shape
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="in_axes"):
    map_over_seeds(one_seed, (1, 0, None, None), how)


def test_one_device_maps_seeds_in_turn():
  from pruning.training.mesh import seed_map

  dense = {"kernel": np.zeros((3, 4, 5))}  # 3 seeds of a 4x5 dense kernel
  conv = {"kernel": np.zeros((3, 3, 3, 1, 8))}  # 3 seeds of a 3x3 convolution
  assert seed_map(dense, "loop") == "loop" and seed_map(conv, "loop") == "loop"
  # Unrolling compiles S copies: only convolutions, which vmap slows down, pay for it.
  assert seed_map(dense, "unroll") == "vmap" and seed_map(conv, "unroll") == "unroll"
  with pytest.raises(ValueError, match="seed map"):
    seed_map(np.zeros((3, 2)), "scan")
