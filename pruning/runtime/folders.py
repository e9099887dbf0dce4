"""Folder outputs (an image folder, a TFDS version): built in a staging folder
beside the final one and put in place whole. Each carries a marker file, and
a folder is only ever replaced where that marker shows an earlier export
wrote it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
from pathlib import Path

from pruning.errors import UserError
from pruning.runtime.atomic import abandoned, file_mode, folder_mode, make_folder, os_error, rename_noreplace

MARKER_NAME = ".pruning-export"


def check_folder_output(final: Path, *, overwrite: bool, protect: tuple[Path, ...] = (), what: str) -> None:
  """Refuses a folder output that would replace something we did not write.

  `final` may be absent, or (with `overwrite`) a folder holding our marker.
  Never the current folder, a folder above it, or one holding `protect`ed
  paths (the subset being exported).
  """
  final = Path(final)
  try:
    resolved = final.resolve()
  except (OSError, RuntimeError):
    raise UserError(f"{what} {str(final)!r} cannot be resolved (a symlink loop?): choose another path") from None
  cwd = Path.cwd().resolve()
  if resolved == cwd or resolved in cwd.parents:
    raise UserError(f"{what} {str(final)!r} is the current folder or above it: give a new folder to create")
  for path in protect:
    with contextlib.suppress(OSError):
      if resolved in Path(path).resolve().parents:
        raise UserError(f"{what} {str(final)!r} holds {str(path)!r}, which this export reads: give another folder")
  if os.path.islink(final):
    raise UserError(f"{what} {str(final)!r} is a symlink: give the real folder, or a new one")
  if not os.path.lexists(final):
    return
  if not final.is_dir():
    raise UserError(f"{what} {str(final)!r} exists and is not a folder: choose another output")
  if not overwrite:
    raise UserError(f"{what} {str(final)!r} already exists: choose another output or pass --overwrite")
  if not (final / MARKER_NAME).is_file():
    raise UserError(
      f"{what} {str(final)!r} exists and was not written by `pruning export`: --overwrite only"
      " replaces an earlier export; choose a new folder"
    )


def staging_folder(final: Path) -> Path:
  """A fresh folder beside `final`, with the modes the umask gives, to build
  the output in and then publish with `publish_folder`."""
  make_folder(final.parent)
  remove_stale_folders(final.parent, f".{glob.escape(final.name)}.*.staging")
  try:
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".staging"))
  except OSError as error:
    raise os_error(error, final) from None
  os.chmod(staging, folder_mode())
  lock = os.open(staging / ".lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  fcntl.flock(lock, fcntl.LOCK_EX)
  _STAGING_LOCKS[str(staging)] = lock
  return staging


_STAGING_LOCKS: dict[str, int] = {}


def discard_staging(staging: Path) -> None:
  """Removes a staging folder this process made (no-op when already published)."""
  lock = _STAGING_LOCKS.pop(str(staging), None)
  if lock is not None:
    os.close(lock)
  if os.path.isdir(staging) and not os.path.islink(staging):
    shutil.rmtree(staging, ignore_errors=True)


def remove_stale_folders(folder: Path, pattern: str) -> None:
  """Staging folders of dead exports (their `.lock` is no longer held)."""
  try:
    candidates = list(folder.glob(pattern))
  except OSError:
    return
  for candidate in candidates:
    if candidate.is_symlink() or not candidate.is_dir():
      continue
    with abandoned(candidate / ".lock") as dead:
      if dead:
        shutil.rmtree(candidate, ignore_errors=True)


def publish_folder(staging: Path, final: Path, *, overwrite: bool, what: str, marker: str = "") -> None:
  """Moves the finished `staging` folder to `final`.

  Without `overwrite`, only if nothing is at `final` (atomic with
  `renameat2`). With it, an earlier export at `final` (it has our marker) is
  moved aside, the new one moved in, then the old one removed; anything else
  that appeared at `final` meanwhile is refused and left alone.
  """
  (staging / MARKER_NAME).write_text(marker or "written by pruning export\n")
  os.chmod(staging / MARKER_NAME, file_mode())
  lock = _STAGING_LOCKS.pop(str(staging), None)
  with contextlib.suppress(FileNotFoundError):
    (staging / ".lock").unlink()
  try:
    old = None
    if overwrite and os.path.lexists(final):
      check_folder_output(final, overwrite=True, what=what)
      old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
      os.rename(final, old / "previous")
    if not rename_noreplace(staging, final):
      if old is not None:
        rename_noreplace(old / "previous", final)
      raise UserError(
        f"{what} {str(final)!r} appeared while this export was writing (another job?):"
        " nothing was replaced; choose another output or pass --overwrite"
      )
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except OSError as error:
    raise os_error(error, final) from None
  finally:
    if lock is not None:
      os.close(lock)
