"""Writes that never leave a half-written file under a final name.

Every output goes to a temporary file in the destination folder and is renamed
into place only once complete (`os.replace` is atomic on POSIX filesystems).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pruning.errors import UserError


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
  """Refuses an existing output unless `overwrite`; returns the path.

  Call this before expensive work so a run does not fail at its very end.
  """
  path = Path(path)
  if path.is_dir():
    raise UserError(f"output {str(path)!r} is a folder: give a file path")
  if path.exists() and not overwrite:
    raise UserError(
        f"output {str(path)!r} already exists: choose another path or pass"
        " --overwrite to replace it"
    )
  return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool) -> Iterator[Path]:
  """Yields a temporary path; on success renames it to `path`.

  On failure the temporary file is removed and any existing `path` is left
  untouched.
  """
  path = check_writable(path, overwrite=overwrite)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  os.close(fd)
  tmp = Path(tmp)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool) -> Path:
  """Writes `text` to `path` atomically."""
  with atomic_path(path, overwrite=overwrite) as tmp:
    tmp.write_text(text)
  return Path(path)
