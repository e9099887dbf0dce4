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
`Normalizer` would be): token ids in, the frozen part's output out, looked
up by row for the examples computed before and computed for the others
(a test split). So everything that runs trained models on a dataset
(scores, evaluation, flagging, retraining) reads the cache unchanged.

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
from pruning.data.tokenizer import sequence_lengths
from pruning.errors import UserError
from pruning.models import create_model, get_model_class
from pruning.runtime.atomic import atomic_path, file_digest, make_folder, remove_stale_temporaries, write_text
from pruning.runtime.cache import cache_root
from pruning.runtime.progress import progress_bar
from pruning.training import buckets

BATCH = 64  # rows per forward call
CACHED_MISSES = 256  # rows not seen before that are worth a cache entry of their own
IN_MEMORY_BYTES = 2 << 30  # larger states stay mapped from the cache file
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
    self._index: dict[bytes, tuple[int, int]] = {}
    self._arrays: list[np.ndarray] = []
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
    # Small states are read, not mapped: a mapped file's pages count in the process's memory as well.
    large = int(np.prod(shape)) * 4 > IN_MEMORY_BYTES
    return np.load(folder / f"{key}.npy", mmap_mode="r" if large else None, allow_pickle=False)

  def inputs(self, x: np.ndarray, *, inner: Normalizer, lengths=None, progress: bool = True) -> FrozenInputs:
    """What trained models apply to raw inputs: `inner` (the inputs' standardisation), then this part."""
    self.states(inner(x), lengths, progress=progress)
    return FrozenInputs(self, inner)

  def lookup(self, x: np.ndarray) -> np.ndarray:
    """The states of the rows of `x`: looked up where computed before, else computed (not cached on disk)."""
    if self._whole is not None and x is self._whole[0]:
      return self._whole[1]
    x = np.ascontiguousarray(x)
    keys = [row.tobytes() for row in x]
    missing = [i for i, key in enumerate(keys) if key not in self._index]
    if len(missing) >= CACHED_MISSES:  # a split of its own (a test split): cached on disk as well
      self._remember(x[missing], self._cached(x[missing], None, progress=False))
    elif missing:
      self._remember(x[missing], self._compute(x[missing], None, progress=False))
    out = np.empty((len(x), *self.state_shape), np.float32)
    for i, key in enumerate(keys):
      array, row = self._index[key]
      out[i] = self._arrays[array][row]
    return out

  def _remember(self, x: np.ndarray, states: np.ndarray) -> None:
    self._arrays.append(states)
    number = len(self._arrays) - 1
    for row, values in enumerate(x):
      self._index.setdefault(values.tobytes(), (number, row))

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


class FrozenInputs:
  """Raw inputs -> the frozen part's output: `inner` (standardisation), then the states by row."""

  def __init__(self, part: FrozenPart, inner: Normalizer):
    self.part, self.inner = part, inner

  @property
  def mapped(self) -> bool:
    """The training split's states are mapped from disk (too large for memory): train from them by row."""
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
