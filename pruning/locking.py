"""One writer per run folder: an advisory lock held for the whole job.

`pruning run` takes an exclusive `flock` on `FOLDER/.pruning.lock` before it
touches anything in the folder. A second job aimed at the same folder fails at
once with an error naming the holder, instead of interleaving files. The
kernel drops the lock when the holder exits, even when it is killed, so a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pruning.errors import UserError

LOCK_NAME = ".pruning.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
  """Holds the folder's lock for the duration of the `with` block.

  With `wait`, blocks until the holder releases it instead of failing (how
  the shards of one job share a proxies folder: one trains, the others wait).
  """
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / LOCK_NAME
  handle = open(path, "a+")
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "unknown"
      raise UserError(
          f"another pruning job (pid {holder}) is writing to {str(folder)!r}: wait for it to finish"
          " or give this one another --output") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    yield path
  finally:
    handle.close()  # closing the descriptor releases the lock
