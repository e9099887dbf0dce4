"""Length bucketing: batches of token ids grouped by length and trimmed.

Text padded to a fixed length L wastes most of a step on padding when
lengths have a long tail (a median of 18 tokens padded to 128). With
`TrainConfig.bucket_by_length`, each seed's epoch order is regrouped so a
batch holds examples of similar length, and each step runs on the columns
up to its longest example, rounded up to one of a few trim lengths (16, 24,
32, 48, 64, 96, 128, ... up to L: one compiled step per trim length).
Padding is masked out of attention, so trimming it does not change what a
model computes.

Grouping keeps the order random (as Hugging Face's `group_by_length`):

1. each seed's shuffled order is cut into chunks of `CHUNK` batches and
   sorted by length within each chunk, then cut into batches;
2. each seed's batches are ranked by their longest example, and one
   permutation of ranks shared by all seeds (drawn from the epoch number)
   orders them, so at step k every seed's batch has about the same length
   and the step's trim length is not set by one seed's long batch.

The last, short batch of an epoch stays last (its padding has weight 0).
"""

from __future__ import annotations

import numpy as np

from pruning.data.tokenizer import sequence_lengths  # noqa: F401  (re-exported: lengths are the data's)

CHUNK = 50  # batches per sorted chunk
_SHARED_SEED = 0x5EED


def trim_lengths(max_length: int) -> np.ndarray:
  """The lengths steps are trimmed to: 16, 24, 32, 48, 64, ... (x1.5 or x4/3 apart), then L."""
  lengths: list[int] = []
  power = 16
  while power < max_length:
    lengths.extend(v for v in (power, power * 3 // 2) if v < max_length)
    power *= 2
  return np.asarray(sorted(set(lengths)) + [max_length], np.int64)


def group_by_length(orders: list[np.ndarray], lengths: np.ndarray, n: int, epoch: int) -> list[np.ndarray]:
  """Each seed's (steps, batch) epoch order regrouped by length (see the module doc).

  `lengths[p]` is the length of epoch position p; the first `n` entries of
  each order are real, the rest padding in the last batch.
  """
  batch = orders[0].shape[1]
  full = n // batch  # whole batches; a short last batch keeps its place
  if full < 2:
    return orders
  shared = np.random.default_rng([_SHARED_SEED, epoch]).permutation(full)
  grouped = []
  for order in orders:
    positions = order.reshape(-1)[: full * batch]
    parts = []
    for start in range(0, len(positions), CHUNK * batch):
      part = positions[start : start + CHUNK * batch]
      parts.append(part[np.argsort(lengths[part], kind="stable")])
    batches = np.concatenate(parts).reshape(full, batch)
    ranked = batches[np.argsort(lengths[batches].max(axis=1), kind="stable")]
    regrouped = order.copy()
    regrouped[:full] = ranked[shared]
    grouped.append(regrouped)
  return grouped


def step_length(longest: int, trims: np.ndarray) -> int:
  """The trim length a step whose longest example has `longest` tokens runs at."""
  return int(trims[np.searchsorted(trims, longest)])
