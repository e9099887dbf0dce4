"""One writer per run folder: an advisory lock held for the whole job.

`pruning run` takes an exclusive `flock` on `FOLDER/.pruning.lock` before it
touches anything in the folder. A second job aimed at the same folder fails at
once with an error naming the holder, instead of interleaving files. The
kernel drops the lock when the holder exits, even when it is killed, so a
crashed run never leaves a stale lock behind.

Commands that write one file (`pruning score --out`, `select`, `merge`, ...)
take the same lock shared, when the output's folder has one: they may write
beside each other, but not into a folder a `pruning run` holds.

The lock file is opened without following symlinks and must be a regular
file with one link, so a planted `.pruning.lock` pointing at another file can
never make the job truncate or write that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from pruning.errors import UserError

LOCK_NAME = ".pruning.lock"


def _open_lock(path: Path, *, create: bool) -> int | None:
  """A descriptor of the lock file at `path` (None if absent and not `create`)."""
  flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
  try:
    descriptor = os.open(path, flags, 0o666)
  except FileNotFoundError:
    if create:
      raise UserError(f"cannot create the lock file {str(path)!r}: check the folder") from None
    return None
  except OSError as error:
    if error.errno == 40 or os.path.islink(path):  # ELOOP: a symlink
      raise UserError(f"{str(path)!r} is a symlink, not a pruning lock file: remove it and run again") from None
    if error.errno == 13 and not create:  # EACCES: a lock we cannot open read-write
      with contextlib.suppress(OSError):
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    raise UserError(
      f"cannot open the lock file {str(path)!r} ({error.strerror}): check the folder's"
      " permissions or choose another output"
    ) from None
  info = os.fstat(descriptor)
  if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
    os.close(descriptor)
    raise UserError(
      f"{str(path)!r} is not a pruning lock file (not a plain file, or linked elsewhere): remove it and run again"
    )
  return descriptor


def _holder(descriptor: int) -> str:
  try:
    return os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
  except OSError:
    return "unknown"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
  """Holds the folder's lock for the duration of the `with` block.

  With `wait`, blocks until the holder releases it instead of failing (how
  the shards of one job share a proxies folder: one trains, the others wait).
  """
  from pruning.runtime.atomic import make_folder

  folder = make_folder(folder)
  path = folder / LOCK_NAME
  descriptor = _open_lock(path, create=True)
  assert descriptor is not None  # created if missing
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise UserError(
        f"another pruning job (pid {_holder(descriptor)}) is writing to {str(folder)!r}: wait for it to"
        " finish or give this one another --output"
      ) from None
    # The file is ours (a plain file with one link, in our folder): record the pid.
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    yield path
  finally:
    os.close(descriptor)  # closing the descriptor releases the lock


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
  """Shares the lock of the folder `path` is written into, if it has one: a
  file output is refused while a `pruning run` holds that folder."""
  folder = Path(path).parent
  descriptor = _open_lock(folder / LOCK_NAME, create=False)
  if descriptor is None:
    yield
    return
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      raise UserError(
        f"a pruning job (pid {_holder(descriptor)}) holds {str(folder)!r}: wait for it to finish"
        f" or write {Path(path).name!r} elsewhere"
      ) from None
    yield
  finally:
    os.close(descriptor)
