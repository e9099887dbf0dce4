"""A frozen pretrained part computed once, not once per seed, epoch and pass.

A pretrained encoder with `freeze_layers: K` (or `all`) trains only what is
above its embeddings and first K blocks, and what is below never changes:
its output for an example is the same in every epoch, for every seed and in
every scoring pass. `FrozenPart` runs it once over a split (one batched
forward pass, grouped by length and trimmed as training is) and keeps the
result on disk under `$PRUNING_CACHE_DIR/frozen-states`, keyed by SHA-256 of
the checkpoint, K, the pooling and the token ids (which fingerprint the
text and the tokenizer). Every seed then trains the top only
(`Transformer.keep_top`), on those states.

`FrozenInputs` is what the trained models apply to raw inputs (where a
`Normalizer` would be): token ids in, the frozen part's output out, found by
their token ids (a 64-bit hash, then the ids compared) for the examples
computed before and computed for the others (a test split). So everything
that runs trained models on a dataset (scores, evaluation, flagging,
retraining) reads the cache unchanged.

States over `IN_MEMORY_BYTES` (64 MiB: about 44,000 sentences of a
384-wide pooled state, fewer where positions are kept) are not read into
memory: they stay in the cache file, and each training step and scoring
batch reads its rows with `pread`, so memory stays flat as the corpus grows.
Training takes the same batches in the same order either way (the same bits).

A cache entry that does not match its recorded digest, shape or key is
discarded with a warning and computed again, never used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from pruning.data.normalization import Normalizer
from pruning.data.streaming import map_npy, take_rows
from pruning.data.tokenizer import sequence_lengths
from pruning.errors import UserError
from pruning.models import create_model, get_model_class
from pruning.runtime.atomic import atomic_path, file_digest, make_folder, remove_stale_temporaries, write_text
from pruning.runtime.cache import cache_root
from pruning.runtime.progress import progress_bar
from pruning.training import buckets

BATCH = 64  # rows per forward call
CACHED_MISSES = 256  # rows not seen before that are worth a cache entry of their own
PROBES = 4  # entries of one hash compared with a row before it counts as not seen (and is computed)
IN_MEMORY_BYTES = 64 << 20  # larger states stay in the cache file: training and scoring read their rows
_VERSION = 1


class FrozenPart:
  """The frozen embeddings and blocks of one model spec, and their outputs by row."""

  def __init__(self, model: Any, fingerprint: dict, *, raw_shape: tuple[int, ...]):
    graphdef, state = nnx.split(model)
    self._state = state
    self._forward = jax.jit(lambda state, x: nnx.merge(graphdef, state).frozen_output(x))
    self.fingerprint = fingerprint
    self.pad_id = int(model.pad_id)
    self.keeps_positions = not model.pools_frozen  # packed (D + 1, L) states, trimmed as token ids are
    self.state_shape = (
      (model.head.in_features + 1, raw_shape[-1]) if self.keeps_positions else (model.head.in_features,)
    )
    # The rows computed so far, found by content: blocks of (token ids, states), and a sorted
    # index of each row's hash with its block and position (20 bytes a row, not a dict entry's ~400).
    self._blocks: list[tuple[np.ndarray, np.ndarray]] = []
    self._hashes = np.empty(0, np.uint64)
    self._block_of = np.empty(0, np.int32)
    self._row_of = np.empty(0, np.int64)
    self._whole: tuple[np.ndarray, np.ndarray] | None = None  # (token ids, states) of the last split

  @classmethod
  def for_spec(cls, model: str, options: dict, *, input_shape, num_classes: int) -> FrozenPart | None:
    """The frozen part of `model` with `options`, if it has one the seeds share (a pretrained checkpoint's)."""
    if not hasattr(get_model_class(model), "frozen_fingerprint"):
      return None  # nothing it freezes is shared by the seeds (a from-scratch model's frozen part is random)
    built: Any = create_model(model, input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(0), **options)
    if not getattr(built, "shared_frozen_part", False) or not built.frozen_layers:
      return None
    return cls(built, built.frozen_fingerprint(), raw_shape=tuple(input_shape))

  def states(self, x: np.ndarray, lengths: np.ndarray | None = None, *, progress: bool = True) -> np.ndarray:
    """The frozen part's output for every row of `x`, from the cache or computed once and cached."""
    x = np.ascontiguousarray(x)
    states = self._cached(x, lengths, progress=progress)
    self._remember(x, states)
    self._whole = (x, states)
    return states

  def _cached(self, x: np.ndarray, lengths, *, progress: bool) -> np.ndarray:
    key = self._key(x)
    folder = cache_root() / "frozen-states"
    shape = (len(x), *self.state_shape)
    if not _sound_entry(folder, key, shape):
      self._write_entry(folder, key, x, lengths, progress=progress)
    if int(np.prod(shape)) * 4 > IN_MEMORY_BYTES:  # training and scoring read their rows from the file
      return map_npy(folder / f"{key}.npy")
    return np.load(folder / f"{key}.npy", allow_pickle=False)

  def inputs(self, x: np.ndarray, *, inner: Normalizer, lengths=None, progress: bool = True) -> FrozenInputs:
    """What trained models apply to raw inputs: `inner` (the inputs' standardisation), then this part."""
    self.states(inner(x), lengths, progress=progress)
    return FrozenInputs(self, inner)

  def lookup(self, x: np.ndarray) -> np.ndarray:
    """The states of the rows of `x`: looked up where computed before, else computed (not cached on disk)."""
    if self._whole is not None and x is self._whole[0]:
      return self._whole[1]
    x = np.ascontiguousarray(x)
    block, row = self._find(x)
    out = np.empty((len(x), *self.state_shape), np.float32)
    missing = np.flatnonzero(block < 0)
    if len(missing):
      # A split of its own (a test split) is cached on disk as well; a few rows are only computed.
      cached = len(missing) >= CACHED_MISSES
      states = (
        self._cached(x[missing], None, progress=False) if cached else self._compute(x[missing], None, progress=False)
      )
      out[missing] = take_rows(states, np.arange(len(missing)))
      self._remember(x[missing], states)
    for number in np.unique(block[block >= 0]):
      where = np.flatnonzero(block == number)
      out[where] = take_rows(self._blocks[number][1], row[where])  # mapped states: read, not mapped in
    return out

  def _find(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block, position) of each row of `x` among the rows computed before; block -1 where there is none."""
    block = np.full(len(x), -1, np.int32)
    row = np.zeros(len(x), np.int64)
    if not len(self._hashes) or not len(x):
      return block, row
    hashes = row_hashes(x)
    at = np.searchsorted(self._hashes, hashes)
    open_rows = np.arange(len(x))
    # A hash is not the row: compare the token ids themselves, trying the next entry of an equal hash
    # (another row that hashes alike) a few times before computing the row again.
    for _ in range(PROBES):
      inside = at[open_rows] < len(self._hashes)
      open_rows = open_rows[inside]
      open_rows = open_rows[self._hashes[at[open_rows]] == hashes[open_rows]]
      if not len(open_rows):
        break
      blocks, rows = self._block_of[at[open_rows]], self._row_of[at[open_rows]]
      same = np.zeros(len(open_rows), bool)
      for number in np.unique(blocks):
        where = np.flatnonzero(blocks == number)
        ids = take_rows(self._blocks[number][0], rows[where])
        same[where] = (ids == x[open_rows[where]]).reshape(len(where), -1).all(axis=1)
      block[open_rows[same]], row[open_rows[same]] = blocks[same], rows[same]
      open_rows = open_rows[~same]
      at[open_rows] += 1
    return block, row

  def _remember(self, x: np.ndarray, states: np.ndarray) -> None:
    self._blocks.append((x, states))
    hashes = np.concatenate([self._hashes, row_hashes(x)])
    blocks = np.concatenate([self._block_of, np.full(len(x), len(self._blocks) - 1, np.int32)])
    rows = np.concatenate([self._row_of, np.arange(len(x), dtype=np.int64)])
    order = np.argsort(hashes, kind="stable")  # equal rows: the first computed is found
    self._hashes, self._block_of, self._row_of = hashes[order], blocks[order], rows[order]

  def _key(self, x: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps({**self.fingerprint, "version": _VERSION}, sort_keys=True).encode())
    digest.update(f"{x.dtype.str}{x.shape}".encode())
    digest.update(x.tobytes())
    return digest.hexdigest()

  def _compute(self, x: np.ndarray, lengths, *, progress: bool, out: np.ndarray | None = None) -> np.ndarray:
    """One forward pass of the frozen part over `x`, in batches of similar length trimmed to their longest."""
    if lengths is None or len(lengths) != len(x):
      lengths = sequence_lengths(x, self.pad_id)
    out = np.zeros((len(x), *self.state_shape), np.float32) if out is None else out
    trims = pass_widths(int(x.shape[-1]))
    order = np.argsort(np.asarray(lengths), kind="stable")
    bar = progress_bar(total=len(x), desc="frozen encoder", unit="example", enabled=progress)
    for start in range(0, len(x), BATCH):
      rows = np.sort(order[start : start + BATCH])
      width = buckets.step_length(int(np.max(lengths[rows])), trims)
      batch = np.zeros((BATCH, *x.shape[1:-1], width), x.dtype)
      batch[: len(rows)] = x[rows][..., :width]
      values = np.asarray(self._forward(self._state, batch))[: len(rows)]
      if self.keeps_positions:
        out[rows, :, :width] = values
      else:
        out[rows] = values
      bar.update(len(rows))
    bar.close()
    return out

  def _write_entry(self, folder: Path, key: str, x: np.ndarray, lengths, *, progress: bool) -> None:
    shape = (len(x), *self.state_shape)
    size = int(np.prod(shape)) * 4
    make_folder(folder)
    # A pass stopped by SIGTERM or SIGKILL leaves its temporary file: any not locked by a live writer goes now.
    remove_stale_temporaries(folder, ".*.tmp")
    path = folder / f"{key}.npy"
    with atomic_path(path, overwrite=True) as tmp:
      states = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
      try:
        with open(tmp, "r+b") as handle:  # room for all of it now, not a crash when the disk fills midway
          os.posix_fallocate(handle.fileno(), 0, os.path.getsize(tmp))
      except OSError as error:
        del states
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
          raise UserError(
            f"no room for the frozen encoder's states ({size / 1e9:.2f} GB) in {folder}: free space there or set"
            " PRUNING_CACHE_DIR to a folder with room"
          ) from None
        if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
          raise UserError(f"cannot write the frozen encoder's states in {folder} ({error.strerror})") from None
      self._compute(x, lengths, progress=progress, out=states)
      states.flush()
      del states
      digest = file_digest(tmp)
    write_text(folder / f"{key}.json", json.dumps({"sha256": digest, "shape": list(shape)}), overwrite=True)


def pass_widths(max_length: int) -> np.ndarray:
  """The widths the frozen pass trims batches to: every multiple of 8 up to 64, then training's
  (`buckets.trim_lengths`). Finer than training's: a forward-only program compiles in a fraction
  of a second, and on real sentences (a median of ~20 tokens) the pass ran 1.13x faster than with
  training's widths (benchmarks/RESULTS.md, "Pretrained encoders")."""
  fine = np.arange(8, min(max_length, 64) + 1, 8)
  coarse = buckets.trim_lengths(max_length)
  return np.unique(np.concatenate([fine, coarse[coarse > 64], [max_length]])).astype(np.int64)


def row_hashes(x: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
  """A 64-bit hash of each row's bytes (vectorised; a chunk of rows at a time, so memory stays flat)."""
  flat = np.ascontiguousarray(x).reshape(len(x), -1).view(np.uint8)
  width = -(-flat.shape[1] // 8)
  # Fixed odd multipliers, one per 8-byte word: a multiply-add hash, then a 64-bit finaliser (splitmix64's).
  multipliers = np.random.default_rng(width).integers(0, 2**62, width, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
  out = np.empty(len(x), np.uint64)
  for start in range(0, len(x), chunk):
    part = flat[start : start + chunk]
    words = np.zeros((len(part), width * 8), np.uint8)
    words[:, : part.shape[1]] = part
    h = (words.view(np.uint64) * multipliers).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    out[start : start + chunk] = h
  return out


class FrozenInputs:
  """Raw inputs -> the frozen part's output: `inner` (standardisation), then the states by row."""

  def __init__(self, part: FrozenPart, inner: Normalizer):
    self.part, self.inner = part, inner

  @property
  def mapped(self) -> bool:
    """The training split's states stay in the cache file (over `IN_MEMORY_BYTES`): train from them by row."""
    whole = self.part._whole
    return whole is not None and isinstance(whole[1], np.memmap)

  @property
  def trims(self) -> bool:
    """Batches can be trimmed to their longest example (the states keep positions)."""
    return self.part.keeps_positions

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return self.part.lookup(self.inner(x))

  def describe(self) -> dict:
    return self.inner.describe()


def _sound_entry(folder: Path, key: str, shape: tuple[int, ...]) -> bool:
  """Whether the cache holds states under `key` of this shape that match their digest; a damaged
  or foreign entry is removed."""
  path, record = folder / f"{key}.npy", folder / f"{key}.json"
  if not path.exists() and not record.exists():
    return False
  try:
    meta = json.loads(record.read_text(encoding="utf-8"))
    states = np.load(path, mmap_mode="r", allow_pickle=False)
    if states.dtype != np.float32 or tuple(states.shape) != shape or tuple(meta["shape"]) != shape:
      raise ValueError(f"it holds {states.dtype} {states.shape}, not float32 {shape}")
    if file_digest(path) != meta["sha256"]:
      raise ValueError("its digest does not match its contents")
    return True
  except Exception as error:  # whatever is wrong with it, the entry is computed again
    warnings.warn(
      f"frozen-encoder cache entry {key[:12]} is unusable ({str(error)[:100] or type(error).__name__}):"
      " discarded and computed again",
      UserWarning,
      stacklevel=3,
    )
    for stale in (path, record):
      with contextlib.suppress(OSError):
        stale.unlink()
    return False


__all__ = ["FrozenInputs", "FrozenPart"]
