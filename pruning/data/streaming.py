"""Data larger than memory: features memory-mapped from disk, read in chunks.

An uncompressed `.npz` member (what `numpy.savez` writes) or an `.npy` file
is mapped rather than read (`map_npz_member`), so its features never need to
fit in memory. Every pass over features then goes chunk by chunk
(`row_chunks`): validation, the dataset fingerprint, the normaliser's
statistics, forward passes and scores. Proxy training gathers each step's
rows on the host instead of copying the split to the device (see
`pruning.training`).

Pages read through a mapping count towards the process's resident memory
until the kernel needs them back; `release` drops them from this process
(they stay in the page cache, so reading them again is cheap), which keeps
peak memory flat however large the file is (`benchmarks/streaming.py`).

Sources that cannot be mapped in place (Parquet, TFDS) stream when asked
(`load_dataset(..., stream=True)`, `--stream`): their features are read a
row group or a chunk at a time into a `SpillFile`, then mapped.
"""

from __future__ import annotations

import mmap
import os
import struct
import weakref
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHUNK_BYTES = 8 * 2**20
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def is_mapped(a) -> bool:
  """Whether `a` reads from a file mapping (a `numpy.memmap` or a view of one)."""
  return isinstance(a, np.memmap)


def rows_per_chunk(a, *, chunk_bytes: int | None = None) -> int:
  """How many rows of `a` make about `chunk_bytes` (as float32, how they are used)."""
  row_bytes = max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * max(a.dtype.itemsize, 4))
  return max(1, (chunk_bytes or CHUNK_BYTES) // row_bytes)


def row_chunks(a, *, num_rows: int | None = None, chunk_bytes: int | None = None) -> Iterator[tuple[int, int]]:
  """(start, stop) ranges of about `chunk_bytes` of `a`'s rows each, covering
  `num_rows` (default: all of `a`)."""
  n = len(a) if num_rows is None else num_rows
  step = rows_per_chunk(a, chunk_bytes=chunk_bytes)
  for start in range(0, n, step):
    yield start, min(start + step, n)


def take_rows(a, positions: np.ndarray) -> np.ndarray:
  """`a[positions]` as an in-memory array. For a mapped file the rows are read
  with `pread` into the result, so random reads (a training batch) map no
  pages into this process: through the mapping, each row would map a whole
  page-cache folio (up to 2 MB on ext4), and one random batch would map most
  of the file."""
  if not (is_mapped(a) and isinstance(a.base, mmap.mmap) and a.flags.c_contiguous):
    return np.asarray(a[positions])
  positions = np.asarray(positions).reshape(-1)
  if positions.size and (positions.min() < 0 or positions.max() >= len(a)):
    raise IndexError(f"rows out of range for {len(a)} rows")
  handle = getattr(a, "_descriptor", None)
  if handle is None:  # a map made elsewhere: read through it
    return np.asarray(a[positions])
  row_bytes = int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize
  offsets = (a.offset + positions.astype(np.int64) * row_bytes).tolist()
  pread = os.pread
  data = b"".join([pread(handle, row_bytes, offset) for offset in offsets])
  if len(data) != row_bytes * len(offsets):
    raise OSError(f"{a.filename} is shorter than its header says: was it truncated?")
  return np.frombuffer(data, a.dtype).reshape(len(offsets), *a.shape[1:]).copy()


class SpillFile:
  """Features that arrive in chunks (Parquet row groups, TFDS reads) written
  to a temporary file and mapped back, so a split larger than memory can be
  read once and then used as a memory-mapped array.

  The file lives in `$PRUNING_CACHE_DIR` (default: the system's temporary
  folder) and is unlinked the moment it is created: it is written and mapped
  through its open descriptor, so it never has a name a stopped job could
  leave behind, whatever stops it (an exception, SIGTERM from Slurm's
  `scancel`, SIGINT, SIGKILL). The kernel frees its blocks when the process
  lets go of the mapping.
  """

  def __init__(self, *, folder: str | None = None):
    import tempfile

    self.folder = folder or os.environ.get("PRUNING_CACHE_DIR") or tempfile.gettempdir()
    try:
      Path(self.folder).mkdir(parents=True, exist_ok=True)
      descriptor, path = tempfile.mkstemp(dir=self.folder, prefix=".pruning-features-", suffix=".f32")
    except OSError as error:
      raise self._error(error) from None
    os.unlink(path)  # nameless from here on
    self._handle = os.fdopen(descriptor, "w+b")
    self.rows = 0
    self.row_shape: tuple[int, ...] | None = None

  def append(self, chunk) -> None:
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which validation refuses
      chunk = np.ascontiguousarray(chunk, np.float32)
    if self.row_shape is None:
      self.row_shape = tuple(chunk.shape[1:])
    elif tuple(chunk.shape[1:]) != self.row_shape:
      raise ValueError(f"feature chunk of shape {chunk.shape[1:]}, expected {self.row_shape}")
    try:
      self._handle.write(chunk.tobytes())
    except OSError as error:
      self._handle.close()
      raise self._error(error) from None
    self.rows += len(chunk)

  def _error(self, error: OSError):
    from pruning.errors import UserError

    return UserError(
      f"cannot write streamed features to {self.folder!r} ({error.strerror or error}): set"
      " PRUNING_CACHE_DIR to a writable folder with room for the training features"
    )

  def discard(self) -> None:
    """Lets go of the file (reading failed part way): its blocks are freed."""
    self._handle.close()

  def finish(self, row_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The features written, as a read-only (rows, *row_shape) float32 map."""
    shape = (self.rows, *(row_shape if row_shape is not None else self.row_shape or (0,)))
    try:
      self._handle.flush()
    except OSError as error:
      self._handle.close()
      raise self._error(error) from None
    try:
      if self.rows == 0 or int(np.prod(shape)) == 0:
        return np.zeros(shape, np.float32)
      mapped = np.memmap(self._handle, dtype=np.float32, mode="r", offset=0, shape=shape)
      descriptor = os.dup(self._handle.fileno())  # `take_rows` reads rows with pread through it
      mapped._descriptor = descriptor  # type: ignore[attr-defined]  # read by take_rows
      weakref.finalize(mapped, os.close, descriptor)
      return mapped
    finally:
      self._handle.close()  # the mapping and the duplicate descriptor keep the data


def release(a) -> None:
  """Drops the pages of a mapped array from this process's resident memory."""
  if not is_mapped(a):
    return
  mapping = getattr(a, "_mmap", None)
  if mapping is None and isinstance(a.base, np.memmap):
    mapping = getattr(a.base, "_mmap", None)
  if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
    mapping.madvise(mmap.MADV_DONTNEED)


def map_npz_member(path: str | Path, name: str) -> np.memmap | None:
  """The array `name` of an `.npz` as a read-only memory map, or None where it
  cannot be mapped (compressed with `savez_compressed`, Fortran order, or
  holding Python objects): the caller then reads it into memory."""
  with zipfile.ZipFile(path) as archive:
    try:
      info = archive.getinfo(f"{name}.npy")
    except KeyError:
      return None
  if info.compress_type != zipfile.ZIP_STORED:
    return None
  with open(path, "rb") as handle:
    handle.seek(info.header_offset)
    header = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if header[0] != b"PK\x03\x04":
      return None
    name_length, extra_length = header[9], header[10]
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    # The zip's CRC-32 guards the stored bytes; a mapping bypasses the check
    # `np.load` makes, so make it here (one read, cheap next to training).
    handle.seek(start)
    if _crc32(handle, info.compress_size) != info.CRC:
      raise ZipCRCError(f"{path}: member {name}.npy fails its CRC-32 check")
    handle.seek(start)
    try:
      shape, fortran_order, dtype = _npy_header(handle)
    except ValueError:
      return None
    offset = handle.tell()
  if fortran_order or dtype.hasobject or not shape or int(np.prod(shape)) == 0:
    return None
  return _open_map(path, dtype, offset=offset, shape=tuple(shape))


def map_npy(path: str | Path) -> np.memmap:
  """An `.npy` file (C order, no Python objects) as a read-only memory map whose
  rows `take_rows` reads with `pread`."""
  with open(path, "rb") as handle:
    shape, fortran_order, dtype = _npy_header(handle)
    offset = handle.tell()
  if fortran_order or dtype.hasobject:
    raise ValueError(f"{path} holds a Fortran-order or object array, which cannot be mapped")
  return _open_map(path, dtype, offset=offset, shape=tuple(shape))


def _npy_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
  """(shape, Fortran order, dtype) of the `.npy` header at `handle`'s position, which it leaves
  at the data; ValueError where it is not one."""
  version = np.lib.format.read_magic(handle)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(handle)
  return np.lib.format.read_array_header_2_0(handle)


class ZipCRCError(zipfile.BadZipFile):
  """A zip member whose bytes do not match their recorded CRC-32."""


def _crc32(handle, size: int) -> int:
  import zlib

  crc, left = 0, size
  while left > 0:
    block = handle.read(min(left, CHUNK_BYTES))
    if not block:
      break
    crc = zlib.crc32(block, crc)
    left -= len(block)
  return crc


def _open_map(path, dtype, *, offset: int, shape: tuple[int, ...]) -> np.memmap:
  """A read-only map of `path` holding its own descriptor of the same file,
  which `take_rows` reads from: a file replaced or unlinked at that path later
  cannot mix its rows with the mapped ones."""
  descriptor = os.open(path, os.O_RDONLY)
  try:
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    if os.fstat(descriptor).st_ino != os.stat(path).st_ino:
      raise OSError(f"{path} changed while it was being opened: load it again")
  except BaseException:
    os.close(descriptor)
    raise
  mapped._descriptor = descriptor  # type: ignore[attr-defined]  # read by take_rows
  weakref.finalize(mapped, os.close, descriptor)
  return mapped


def iter_chunks(a, rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
  """`a` (or `a[rows]`) in chunks of about `CHUNK_BYTES`, each an in-memory
  array; a mapped array's pages are released after every chunk."""
  count = len(a) if rows is None else len(rows)
  try:
    for start, stop in row_chunks(a, num_rows=count):
      yield np.asarray(a[start:stop] if rows is None else a[rows[start:stop]])
      release(a)
  finally:
    release(a)


def all_finite(a) -> bool:
  """`numpy.isfinite(a).all()`, a chunk at a time."""
  if a.dtype.kind != "f":
    return True
  # As float32, how the features are used: 1e300 in a float64 file is infinite there.
  with np.errstate(over="ignore"):
    return all(bool(np.isfinite(chunk.astype(np.float32, copy=False)).all()) for chunk in iter_chunks(a))


def hash_rows(digest, a, *, dtype=np.float32) -> None:
  """Feeds `a`'s bytes, as `dtype`, into `digest` a chunk at a time (the same
  bytes as hashing the whole array at once)."""
  for chunk in iter_chunks(a):
    digest.update(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
