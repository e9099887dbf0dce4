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
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEEDS, DATA = "seeds", "data"


def device_mesh(num_seeds: int, devices=None) -> Mesh | None:
  """A (seeds, data) mesh over this process's devices; None with a single device.

  Local devices only: in a multi-process job (`pruning.jobs.distributed`) every
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


# How per-seed work maps over the stacked seed axis (see `map_over_seeds`).
SEED_MAPS = ("vmap", "loop", "unroll")


def seeds_split(tree) -> bool:
  """Whether the stacked per-seed arrays of `tree` are split over several devices."""
  placement = getattr(jax.tree.leaves(tree)[0], "sharding", None)
  if not isinstance(placement, NamedSharding) or not placement.spec:
    return False
  return placement.spec[0] == SEEDS and placement.mesh.shape[SEEDS] > 1


def seed_map(tree, preferred: str) -> str:
  """How to map over the seeds of the stacked parameters `tree`.

  On XLA's CPU backend `vmap` over seeds turns each convolution into one
  grouped convolution, which it runs 1.4-5x slower than S plain ones
  (benchmarks/RESULTS.md, "Mapping over seeds"). So where the seeds run on
  one CPU device: `preferred` "loop" is kept (compiled once whatever S), and
  "unroll" (compiled S times over) is kept for models with convolution
  kernels (rank 3 or more per seed), where it pays for its compile time;
  MLPs gained at most 1.12x from it. Seeds split over devices, and
  accelerators (not measured here), keep `vmap`, which runs them in parallel.
  """
  if preferred not in SEED_MAPS:
    raise ValueError(f"seed map {preferred!r}: use one of {SEED_MAPS}")
  if jax.default_backend() != "cpu" or seeds_split(tree):
    return "vmap"
  if preferred == "unroll" and not any(np.ndim(leaf) >= 4 for leaf in jax.tree.leaves(tree)):
    return "vmap"
  return preferred


def map_over_seeds(fn, in_axes: tuple, how: str):
  """`fn` mapped over axis 0 of the arguments whose `in_axes` entry is 0 (others: None).

  - "vmap": one batched program (`jax.vmap`);
  - "loop": the seeds one after another in a `lax.map` (a while loop:
    compiled once whatever S; fastest for forward passes on CPU, but XLA's
    CPU backend runs weight-gradient convolutions inside loops ~15x slower);
  - "unroll": the seeds one after another, traced S times into one program
    (compile time grows with S; fastest for training steps on CPU).
  """
  if any(axis not in (0, None) for axis in in_axes):
    raise ValueError(f"in_axes must be 0 or None, got {in_axes}")
  if how == "vmap":
    return jax.vmap(fn, in_axes=in_axes)
  if how not in SEED_MAPS:
    raise ValueError(f"seed map {how!r}: use one of {SEED_MAPS}")

  def mapped(*args):
    seeded = tuple(arg for arg, axis in zip(args, in_axes) if axis == 0)

    def one_seed(per_seed):
      values = iter(per_seed)
      return fn(*(next(values) if axis == 0 else arg for arg, axis in zip(args, in_axes)))

    if how == "loop":
      return jax.lax.map(one_seed, seeded)
    count = jax.tree.leaves(seeded)[0].shape[0]
    outputs = [one_seed(jax.tree.map(lambda a, s=s: a[s], seeded)) for s in range(count)]
    return jax.tree.map(lambda *per_seed: jnp.stack(per_seed), *outputs)

  return mapped
