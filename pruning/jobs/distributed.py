"""JAX's multi-process mode (`jax.distributed`) for TPU pods and multi-GPU hosts.

Every process runs the same `pruning score --distributed` command. Each
joins the job, trains the proxies on its own devices (`jax.local_devices()`),
scores its share of the rows (shard `process_index` of `process_count`, as
`--shard` would) into a part file, and waits at a barrier; process 0 then
merges the parts into the manifest (see `pruning.jobs.parts`). On CPU the
barrier's collective runs over gloo.

Without arguments `jax.distributed.initialize` finds the coordinator itself
on Slurm, Open MPI, Kubernetes (JobSet) and Cloud TPU; elsewhere pass the
coordinator address, the number of processes and this process's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruning.errors import UserError


def initialize(
  *, coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> tuple[int, int]:
  """Joins the job; returns (this process's index, the number of processes)."""
  import jax

  given: dict[str, Any] = {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
  if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
    raise UserError(
      "--coordinator, --num-processes and --process-id go together: give all three, or none"
      " to let JAX detect the cluster (Slurm, MPI, Kubernetes, TPU)"
    )
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
  except (RuntimeError, ValueError) as error:
    raise UserError(
      f"could not join the distributed job ({str(error).splitlines()[0][:200]}): check the"
      " coordinator address and that every process runs the same command"
    ) from None
  return jax.process_index(), jax.process_count()


def barrier(name: str) -> None:
  """Waits until every process of the job reaches the barrier `name`."""
  from jax.experimental import multihost_utils

  multihost_utils.sync_global_devices(name)


def part_path(out: str | Path, index: int, count: int) -> Path:
  out = Path(out)
  return out.with_name(f".{out.stem}.part-{index}-of-{count}{out.suffix}")
