"""Writes that never leave a half-written file under a final name, and never
replace or delete what the tool did not write.

- Every file output goes to a temporary file in the destination folder and is
  put in place only once complete: with `overwrite` by `os.replace` (atomic on
  POSIX), without it by `os.link`, which fails if anything appeared at the path
  meanwhile (so two writers racing for one new path cannot both succeed).
- A temporary file is `flock`-ed by its writer while it is written; a later
  writer to the same path removes the temporaries whose lock it can take (their
  writer died), and leaves those of a live writer alone.
- Files and folders come out with the modes the user's umask gives (`mkstemp`
  and `mkdtemp` would make them private to their owner).
- Folder outputs (an image folder, a TFDS version) are in
  `pruning.runtime.folders`.
- Every name that becomes one path component (selection and arm names, class
  names, example ids used as file names) passes `check_path_component`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pruning.errors import UserError

# Longest component we create: the file system's 255 bytes, less room for a
# suffix (`.parquet`, `.png`, `.json`) and the `.NAME.XXXXXXXX.tmp` wrapping.
MAX_COMPONENT_BYTES = 200


def check_path_component(text, *, what: str) -> str:
  """`text` if it can be one file or folder name, else a `UserError`.

  Refused: non-strings, empty names, `.`/`..` and other names starting with a
  dot (hidden, and our temporaries), path separators, NUL and other control
  characters (a newline would also break one-per-line files), and names over
  `MAX_COMPONENT_BYTES` bytes.
  """
  if not isinstance(text, str):
    raise UserError(f"{what} {text!r} must be a string: give a name such as el2n_hardest")
  problem = None
  if not text or text.startswith("."):
    problem = "is empty or starts with '.'"
  elif any(c in text for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in text):
    problem = "holds a path separator or a control character"
  elif len(text.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
    problem = f"is longer than {MAX_COMPONENT_BYTES} bytes"
  if problem:
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise UserError(f"{what} {shown!r} {problem}, so it cannot name a file: use letters, digits, '_', '-', '.', '@'")
  return text


def umask() -> int:
  """The process's umask, read without changing it where the system allows."""
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except OSError:
    pass
  mask = os.umask(0o022)  # no way to read it without setting it
  os.umask(mask)
  return mask


def file_mode() -> int:
  return 0o666 & ~umask()


def folder_mode() -> int:
  return 0o777 & ~umask()


def os_error(error: OSError, path: Path, *, action: str = "write") -> UserError:
  reason = error.strerror or str(error)
  return UserError(f"cannot {action} {str(path)!r} ({reason}): choose a writable output path")


def make_folder(path: str | os.PathLike) -> Path:
  """`mkdir -p` with our one-line error."""
  path = Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except FileExistsError:
    raise UserError(f"cannot create folder {str(path)!r}: a file is in the way; choose another output") from None
  except OSError as error:
    raise os_error(error, path, action="create folder") from None
  if not path.is_dir():
    raise UserError(f"cannot create folder {str(path)!r}: a file is in the way; choose another output")
  return path


def file_digest(path: str | os.PathLike) -> str:
  """The SHA-256 of a file's bytes, read a megabyte at a time."""
  digest = hashlib.sha256()
  with open(path, "rb") as handle:
    for block in iter(lambda: handle.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_distinct_paths(
  outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None]
) -> None:
  """Refuses, before any work, an output that is one of the inputs or another
  output (by the file it names, links resolved): `--out S` over the subset
  `S` being read would destroy it. Keys are the flags, for the message."""
  seen: dict[str, str] = {}
  for flag, path in [*inputs.items(), *outputs.items()]:
    if path is None:
      continue
    real = os.path.realpath(path)
    if real in seen:
      raise UserError(
        f"{flag} {str(path)!r} is the file {seen[real]} names too: write each output to its own file,"
        " never over an input"
      )
    seen[real] = flag


def refuse_symlinks(root: str | os.PathLike, *relatives: str | os.PathLike) -> None:
  """Refuses a symlink at any folder of `root/relative` below `root`: a job's
  working folders are its own, and a planted link would send its state (or,
  with --overwrite, a replaced file) outside the output."""
  for relative in relatives:
    path = Path(root)
    for part in Path(relative).parts:
      path = path / part
      if os.path.islink(path):
        raise UserError(f"{str(path)!r} is a symlink, not a folder this job made: remove the link and run again")


def make_working_folder(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
  """`root/relative`, created a folder at a time without following a symlink
  below `root` (see `refuse_symlinks`); the modes are the umask's."""
  path = Path(root)
  for part in Path(relative).parts:
    path = path / part
    refuse_symlinks(path.parent, part)
    try:
      os.mkdir(path)
    except FileExistsError:
      if os.path.islink(path) or not path.is_dir():
        raise UserError(f"cannot create folder {str(path)!r}: something else is in the way; remove it") from None
    except OSError as error:
      raise os_error(error, path, action="create folder") from None
  return path


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
  """Refuses an output that exists (unless `overwrite`) or that is not a
  regular file, and a path under a file; returns the path.

  Call this before expensive work so a run does not fail at its very end.
  """
  path = Path(path)
  if not path.name or path.name in (".", ".."):
    raise UserError(f"output {str(path)!r} is not a file name: give a file path")
  for parent in path.parents:
    if parent.exists():
      if not parent.is_dir():
        raise UserError(f"output {str(path)!r} lies under {str(parent)!r}, which is a file: choose another path")
      break
  if path.is_dir():
    raise UserError(f"output {str(path)!r} is a folder: give a file path")
  if os.path.lexists(path):
    if not overwrite:
      raise UserError(f"output {str(path)!r} already exists: choose another path or pass --overwrite to replace it")
    if not stat.S_ISREG(os.stat(path).st_mode if path.exists() else os.lstat(path).st_mode):
      raise UserError(f"output {str(path)!r} exists and is not a regular file: choose another path")
  return path


@contextlib.contextmanager
def abandoned(path: Path) -> Iterator[bool]:
  """True while `path`, a plain file, is not `flock`-ed by a live writer (its
  lock is then held here until the block ends); False otherwise."""
  try:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
  except OSError:
    yield False
    return
  try:
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
      yield False
      return
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False  # its writer is alive
      return
    yield True
  finally:
    os.close(descriptor)


def remove_stale_temporaries(folder: Path, pattern: str = ".*.tmp") -> None:
  """Removes temporaries in `folder` matching `pattern` whose writer has died
  (its `flock` on the file is gone); a live writer's are left alone."""
  try:
    candidates = list(folder.glob(pattern))
  except OSError:
    return
  for candidate in candidates:
    with abandoned(candidate) as dead:
      if dead:
        with contextlib.suppress(FileNotFoundError):
          os.unlink(candidate)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool) -> Iterator[Path]:
  """Yields a temporary path; on success puts it at `path`.

  Without `overwrite` the file is linked into place only if nothing is there
  (a file that appeared meanwhile is refused, not replaced). On failure the
  temporary file is removed and any existing `path` is left untouched.
  """
  path = check_writable(path, overwrite=overwrite)
  make_folder(path.parent)
  remove_stale_temporaries(path.parent, f".{glob.escape(path.name)}.*.tmp")
  try:
    descriptor, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  except OSError as error:
    raise os_error(error, path) from None
  tmp = Path(tmp_name)
  try:
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # marks the temporary as alive
    os.fchmod(descriptor, file_mode())
    yield tmp
    put_in_place(tmp, path, overwrite=overwrite)
  finally:
    with contextlib.suppress(FileNotFoundError):
      tmp.unlink()
    os.close(descriptor)


def put_in_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
  """Moves the finished `tmp` to `path`: replacing only with `overwrite`."""
  try:
    if overwrite:
      check_writable(path, overwrite=True)
      os.replace(tmp, path)
      return
    try:
      os.link(tmp, path)
    except FileExistsError:
      raise UserError(
        f"output {str(path)!r} appeared while this job was writing it (another job?):"
        " nothing was replaced; choose another path or pass --overwrite"
      ) from None
    except OSError as error:
      if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        raise
      # No hard links here (some network and FUSE file systems): rename without
      # replacing where the kernel can, else the small check-then-rename race.
      if not rename_noreplace(tmp, path):
        raise UserError(
          f"output {str(path)!r} appeared while this job was writing it (another job?):"
          " nothing was replaced; choose another path or pass --overwrite"
        ) from None
  except OSError as error:
    raise os_error(error, path) from None


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def rename_noreplace(source: Path, target: Path) -> bool:
  """Renames `source` to `target` only if `target` does not exist (files or
  folders); False if it exists. Atomic with Linux's `renameat2`; elsewhere a
  check then a rename."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError):
    renameat2 = None
  if renameat2 is not None:
    result = renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE)
    if result == 0:
      return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
      return False
    if code not in (errno.ENOSYS, errno.EINVAL):
      raise OSError(code, os.strerror(code), str(target))
  if os.path.lexists(target):
    return False
  os.rename(source, target)
  return True


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool) -> Path:
  """Writes `text` to `path` atomically."""
  with atomic_path(path, overwrite=overwrite) as tmp:
    tmp.write_text(text)
  return Path(path)
