"""`.npz` files: arrays `x`, `y`, optional `id`, and optional `x_test`/`y_test`/`id_test`.

Training features saved uncompressed (`numpy.savez`) are memory-mapped, not
read, so they may be larger than memory (`pruning.data.streaming`);
`savez_compressed` files are read whole.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pruning.data.dataset import Dataset, make_dataset, make_split
from pruning.data.sources import register_source
from pruning.data.streaming import ZipCRCError, map_npz_member
from pruning.errors import UserError


def _check_member_sizes(archive, spec: str) -> None:
  """Refuses members whose `.npy` header claims more data than the member
  holds (numpy would first allocate what the header says: terabytes, for a
  damaged or hostile file)."""
  for info in archive.zip.infolist():
    if not info.filename.endswith(".npy"):
      continue
    try:
      with archive.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member, max_header_size=1 << 16)
    except (
      ValueError,
      OSError,
      EOFError,
      zipfile.BadZipFile,
      SyntaxError,
      TypeError,
      NotImplementedError,
      RuntimeError,
    ):  # also damaged headers claiming encryption or an unknown compression
      raise UserError(f"{spec}: member {info.filename!r} is not a readable .npy array: save the file again") from None
    declared = int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 0)
    if declared > info.file_size:
      raise UserError(
        f"{spec}: member {info.filename!r} claims shape {shape} ({declared} bytes) but holds"
        f" {info.file_size} bytes: the file is damaged; save it again"
      )


def load_npz(path: str, *, spec: str | None = None) -> Dataset:
  """Loads an `.npz` without ever unpickling (object arrays are refused)."""
  spec = spec or f"npz:{path}"
  file = Path(path)
  if file.is_dir():
    raise UserError(f"{spec}: {path!r} is a folder, not an .npz file: give the file's path")
  if not file.is_file():
    raise UserError(f"{spec}: no such file {path!r}: check the path")
  try:
    archive = np.load(file, allow_pickle=False)
  except (ValueError, OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as error:
    raise UserError(
      f"{spec}: not a readable .npz file ({type(error).__name__}): save it with numpy.savez(path, x=..., y=...)"
    ) from None
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise UserError(
      f"{spec}: the file is a single .npy array, not an .npz archive: save it with numpy.savez(path, x=..., y=...)"
    )
  with archive:
    _check_member_sizes(archive, spec)
    names = set(archive.files)
    missing = {"x", "y"} - names
    if missing:
      raise UserError(
        f"{spec}: the .npz has no array {sorted(missing)[0]!r} (it has"
        f" {sorted(names)}): save features as `x` and labels as `y`"
      )

    def get(name):
      if name not in names:
        return None
      try:
        return archive[name]
      except ValueError as error:
        if "allow_pickle" in str(error) or "object" in str(error):
          raise UserError(
            f"{spec}: array {name!r} holds Python objects, which would need"
            " unpickling and are refused: save plain numeric or string arrays"
          ) from None
        raise UserError(f"{spec}: array {name!r} is damaged ({error}): save the file again") from None
      except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
        raise UserError(
          f"{spec}: array {name!r} is damaged or truncated ({type(error).__name__}): save the file again"
        ) from None

    try:
      x = map_npz_member(file, "x")
    except ZipCRCError:
      raise UserError(
        f"{spec}: array 'x' fails its CRC-32 check (the file is corrupted): copy or save it again"
      ) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError):
      x = None  # damaged: the plain read names the problem
    if x is None or x.dtype.kind not in "biuf":
      x = get("x")
    if x.ndim == 4 and x.shape[1] in (1, 3, 4) and x.shape[3] not in (1, 3, 4):
      raise UserError(
        f"{spec}: x has shape {x.shape}, which looks channels-first (N, C, H, W): save images"
        " channels-last, as x.transpose(0, 2, 3, 1)"
      )
    train = make_split(x, get("y"), get("id"), source=f"{spec} (x, y)")
    test = None
    if "x_test" in names or "y_test" in names:
      if not {"x_test", "y_test"} <= names:
        raise UserError(f"{spec}: the .npz has only one of x_test/y_test: give both or neither")
      test_ids = get("id_test")
      if test_ids is None:
        test_ids = [f"test-{i}" for i in range(len(get("y_test")))]
      test = make_split(get("x_test"), get("y_test"), test_ids, source=f"{spec} (x_test, y_test)")
  return make_dataset(spec, train, test)


@register_source("npz", argument="PATH", description="arrays x, y (and x_test, y_test, ids) in an .npz file")
def _npz_source(path, *, spec, **options) -> Dataset:
  return load_npz(path, spec=spec)
