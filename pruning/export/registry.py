"""Export formats by name, each registered from its own module."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from pruning.data.dataset import Dataset, Split
from pruning.errors import UserError
from pruning.registry import Registry
from pruning.runtime.atomic import check_writable, file_mode, folder_mode


@dataclasses.dataclass(frozen=True)
class ExportFormat:
  """`write(kept, dataset, subset, path, *, overwrite, name, version) -> Path` and
  `check_output(path, *, overwrite, subset, name, version)`, which refuses an
  output before any work is done. `repeats_ids`: rebalanced copies keep their
  ids (an id list) instead of getting `<id>~rep<k>`."""

  write: Callable[..., Path]
  check_output: Callable[..., None]
  repeats_ids: bool = False


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")


def register_format(name: str, *, check_output: Callable[..., None], description: str, repeats_ids: bool = False):
  """Decorator: registers a writer as export format `name`."""

  def decorate(write: Callable[..., Path]) -> Callable[..., Path]:
    EXPORT_FORMATS.register(name, ExportFormat(write, check_output, repeats_ids), description=description)
    return write

  return decorate


def check_file_output(path, *, overwrite: bool, subset=None, **_) -> None:
  """A one-file output: writable, and not the subset being exported."""
  check_writable(path, overwrite=overwrite)
  if subset is not None and os.path.lexists(path) and os.path.samefile(path, subset):
    raise UserError(f"output {str(path)!r} is the subset being exported: choose another path")


def export_splits(kept: Split, dataset: Dataset) -> dict[str, Split]:
  """The splits a folder export writes: the kept training examples, and the test split."""
  return {"train": kept, **({"test": dataset.test} if dataset.test is not None else {})}


def share_modes(folder: Path) -> None:
  """Gives everything under `folder` the modes the umask implies."""
  os.chmod(folder, folder_mode())
  for parent, folders, files in os.walk(folder):
    for name in folders:
      os.chmod(os.path.join(parent, name), folder_mode())
    for name in files:
      os.chmod(os.path.join(parent, name), file_mode())
