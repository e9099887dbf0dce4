"""Sharded scoring jobs: `--shard I/N` scores one block of rows; `merge` joins the parts.

Per-example scores need no communication between examples, so a Slurm array
or a Kubernetes indexed Job can run N copies of one `pruning score` command,
each with its own `--shard I/N`. Every copy trains the same proxies (same
data, seeds and settings give the same models) and scores rows
[floor(I N_rows / N), floor((I + 1) N_rows / N)) of the training split into one
part file. `merge_parts` checks that the parts come from one job (same
config, dataset fingerprint, seeds and scores) and cover every row exactly
once, then writes the manifest the unsharded job would have written.
"""

from __future__ import annotations

import copy
import re

import pandas as pd

from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.scores.run import shard_info  # noqa: F401  (where a job's shards are cut)

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
# Provenance that legitimately differs between the parts of one job.
_PER_PART = ("shard", "created_at")


def parse_shard(text: str) -> tuple[int, int]:
  """`"I/N"` (0 <= I < N) -> (I, N)."""
  match = _SPEC.fullmatch(str(text))
  if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
    raise UserError(f"--shard {text!r} must be I/N with 0 <= I < N, e.g. 0/4 (Slurm: $SLURM_ARRAY_TASK_ID/N)")
  return int(match.group(1)), int(match.group(2))


def merge_parts(parts: list[Manifest], *, names: list[str] | None = None) -> Manifest:
  """The whole manifest from the part files of one sharded job."""
  if not parts:
    raise UserError("no part files given: pass every part of the sharded job")
  names = names or [f"part {i}" for i in range(len(parts))]
  shards = []
  for name, part in zip(names, parts):
    shard = part.provenance.get("shard")
    if shard is None:
      raise UserError(f"{name} is not a part file (no shard in its provenance): score it with --shard I/N")
    shards.append(shard)
  reference = {k: v for k, v in parts[0].provenance.items() if k not in _PER_PART}
  for name, part in zip(names[1:], parts[1:]):
    other = {k: v for k, v in part.provenance.items() if k not in _PER_PART}
    if other != reference:
      differing = sorted(k for k in set(other) | set(reference) if other.get(k) != reference.get(k))
      raise UserError(
        f"{name} comes from another job than {names[0]} (its {', '.join(differing)} differ):"
        " merge only the parts of one sharded job"
      )
  count = shards[0]["count"]
  if any(s["count"] != count for s in shards):
    raise UserError(f"the parts were cut into different numbers of shards ({sorted({s['count'] for s in shards})})")
  seen: dict[int, str] = {}
  for name, shard in zip(names, shards):
    if shard["index"] in seen:
      raise UserError(
        f"shard {shard['index']}/{count} appears twice ({seen[shard['index']]} and {name}): pass each part once"
      )
    seen[shard["index"]] = name
  missing = sorted(set(range(count)) - set(seen))
  if missing:
    raise UserError(f"shards {', '.join(f'{i}/{count}' for i in missing)} are missing: run them, then merge every part")
  table = pd.concat([p.table for p in parts], ignore_index=True).sort_values("index", kind="stable")
  table = table.reset_index(drop=True)
  num_rows = shards[0]["num_rows"]
  if len(table) != num_rows or not table["index"].is_unique:
    raise UserError(
      f"the parts hold {len(table)} rows ({table['index'].nunique()} distinct) for a split of"
      f" {num_rows}: a part file was altered; rescore it"
    )
  provenance = copy.deepcopy(reference)
  provenance["created_at"] = max(p.provenance.get("created_at", "") for p in parts)
  return Manifest(table=table, provenance=provenance)
