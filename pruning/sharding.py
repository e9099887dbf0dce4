"""Many devices in one process: a `seeds` x `data` device mesh and `NamedSharding`.

Per-seed work is independent, so the stacked states of S seeds are split
along a `seeds` axis; batches of examples are split along a `data` axis.
`jax.jit` follows the placement of its inputs (computation follows data), so
the same jitted, vmapped programs run on one CPU, on 8 devices or on a
multi-GPU host without change. With one device nothing is placed and the
mesh is None.

The `seeds` axis takes gcd(S, devices) devices; the `data` axis the rest.
A batch whose size the `data` axis does not divide stays whole on each
seed's devices (replicated), which is always correct.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEEDS, DATA = "seeds", "data"


def device_mesh(num_seeds: int, devices=None) -> Mesh | None:
  """A (seeds, data) mesh over this process's devices; None with a single device.

  Local devices only: in a multi-process job (`pruning.distributed`) every
  process runs its own programs on its own devices.
  """
  devices = list(devices if devices is not None else jax.local_devices())
  if len(devices) <= 1:
    return None
  seeds = math.gcd(num_seeds, len(devices))
  return Mesh(np.asarray(devices).reshape(seeds, len(devices) // seeds), (SEEDS, DATA))


def place_seeds(tree, mesh: Mesh | None):
  """Stacked per-seed arrays (leading axis S), split along the `seeds` axis."""
  if mesh is None:
    return tree
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(SEEDS)))


def replicate(tree, mesh: Mesh | None):
  if mesh is None:
    return tree
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def batch_spec(mesh: Mesh | None, size: int, *, per_seed: bool) -> NamedSharding | None:
  """The sharding of a batch of `size` rows: along `data` when it divides the
  size; `per_seed` batches (shape (S, B, ...)) also split along `seeds`."""
  if mesh is None:
    return None
  data = DATA if size % mesh.shape[DATA] == 0 else None
  return NamedSharding(mesh, PartitionSpec(SEEDS, data) if per_seed else PartitionSpec(data))


def place(array, sharding: NamedSharding | None):
  return array if sharding is None else jax.device_put(array, sharding)
