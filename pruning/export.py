"""Export of a subset: an id list, a Parquet table, an `.npz`, a TFDS dataset or
an image folder of the kept examples.

- `ids`: one example id per line.
- `parquet`, `npz`: load back with `parquet:PATH` and `npz:PATH`, with the same
  ids, labels and features; both carry the test split too, so a retraining
  job can evaluate on the same held-out data.
- `tfds`: a new versioned TFDS dataset `OUT/NAME/VERSION/` in ArrayRecord
  files (written without TensorFlow), with features `x` (float32, the
  dataset's shape), `label` (`ClassLabel`) and `example_id` (the original id),
  splits `train` (the subset) and `test`, and the selection in its metadata.
  `tfds.builder_from_directory(OUT/NAME/VERSION)` and
  `tfds.data_source(NAME, data_dir=OUT)` load it; so does `tfds:NAME:train`
  with `--data-dir OUT`, with the original ids.
- `images`: `OUT/<split>/<class>/<id>.png`, one folder per class (the layout
  of `tfds.folder_dataset.ImageFolder` and torchvision's `ImageFolder`), for
  image data (H, W, C) with 1 or 3 channels. Pixels are written as they are
  when the data is 8-bit (whole numbers in 0..255 reaching above 127); else
  they are scaled linearly over the dataset's range onto 0..255, from 0 for
  non-negative data: digits' 0..16 becomes 0..255 (x 255/16), so the PNGs
  are not near-black; standardised floats are min-max scaled.

`rebalance` r in (0, 1] oversamples the kept training examples so that every
class has at least ceil(r * n_max) of them (n_max: the largest class's kept
count): whole copies, then a seeded sample without replacement for the rest
(Buda et al., 2018, found oversampling to full balance, r = 1, the dominant
remedy for imbalance). Copies get ids `<id>~rep<k>`, so ids stay unique; the
id list repeats the original ids instead.

Names that become paths are checked: a TFDS name must be snake_case, a
version `X.Y.Z`, and class names and ids used as file names must not hold a
path separator or be `.`/`..`. Nothing is overwritten without `overwrite`.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.data.dataset import Dataset, Split
from pruning.data.parquet import FEATURE_SHAPE_KEY
from pruning.errors import UserError, unknown_name_error
from pruning.manifest import Manifest
from pruning.retraining import subset_rows
from pruning.runtime.atomic import (
  atomic_path,
  check_folder_output,
  check_path_component,
  check_writable,
  discard_staging,
  publish_folder,
  staging_folder,
  write_text,
)

FORMATS = ("ids", "parquet", "npz", "tfds", "images")
TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*")
VERSION = re.compile(r"\d+\.\d+\.\d+")


def rebalanced_rows(labels: np.ndarray, ratio: float, *, seed: int = 0) -> np.ndarray:
  """Positions into `labels`, with minority classes oversampled to ratio * n_max."""
  if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
    raise UserError(f"rebalance {ratio!r} must lie in (0, 1]: 1 oversamples every class to the largest")
  counts = np.bincount(labels)
  target = math.ceil(ratio * counts.max())
  rng = np.random.default_rng(seed)
  rows = [np.arange(len(labels))]
  for label in np.flatnonzero((counts > 0) & (counts < target)):
    members = np.flatnonzero(labels == label)
    missing = target - len(members)
    whole, rest = divmod(missing, len(members))
    rows += [members] * whole + [np.sort(rng.choice(members, size=rest, replace=False))]
  return np.concatenate(rows)


def copy_ids(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """Ids for `ids[rows]`, the k-th repeat of an id named `<id>~rep<k>`
  (`<id>~rep<k>.<n>` where a real id already has that name), all distinct."""
  used = {str(i) for i in ids}
  seen: dict[int, int] = {}
  out = []
  for row in rows.tolist():
    k = seen.get(row, 0)
    seen[row] = k + 1
    if k == 0:
      out.append(str(ids[row]))
      continue
    candidate, n = f"{ids[row]}~rep{k}", 0
    while candidate in used:
      n += 1
      candidate = f"{ids[row]}~rep{k}.{n}"
    used.add(candidate)
    out.append(candidate)
  return np.asarray(out, dtype=object)


def export_subset(
  subset: Manifest,
  dataset: Dataset,
  path: str | os.PathLike,
  *,
  format: str,
  overwrite: bool = False,
  name: str | None = None,
  version: str = "1.0.0",
  rebalance: float | None = None,
  seed: int = 0,
) -> Path:
  """Writes the subset's examples to `path` in `format` (see the module doc)."""
  if format not in FORMATS:
    raise unknown_name_error("export format", format, FORMATS)
  rows = subset_rows(dataset, subset)
  kept = dataset.train.take(rows)
  if rebalance is not None:
    from pruning.runtime.validation import check_seed

    repeat = rebalanced_rows(kept.y, rebalance, seed=check_seed(seed, "--seed"))
    if format == "ids":
      kept = Split(x=kept.x[repeat], y=kept.y[repeat], ids=kept.ids[repeat])
    else:
      kept = Split(x=kept.x[repeat], y=kept.y[repeat], ids=copy_ids(kept.ids, repeat))
  if format == "ids":
    broken = next((str(i) for i in kept.ids if any(c in str(i) for c in "\n\r")), None)
    if broken is not None:
      raise UserError(
        f"example id {broken!r} holds a line break, so a one-per-line id list cannot hold it:"
        " export as parquet or npz instead"
      )
    return write_text(path, "".join(f"{i}\n" for i in kept.ids), overwrite=overwrite)
  if format == "npz":
    arrays = {"x": kept.x, "y": kept.y, "id": kept.ids.astype(str)}
    if dataset.test is not None:
      arrays.update(x_test=dataset.test.x, y_test=dataset.test.y, id_test=dataset.test.ids.astype(str))
    with atomic_path(path, overwrite=overwrite) as tmp:
      with open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)
  if format == "tfds":
    return _write_tfds(kept, dataset, subset, Path(path), name=name, version=version, overwrite=overwrite)
  if format == "images":
    return _write_images(kept, dataset, Path(path), overwrite=overwrite)
  return _write_parquet(kept, dataset, path, overwrite=overwrite)


def _frame(split, name: str) -> pd.DataFrame:
  flat = split.x.reshape(len(split), -1)
  features = pd.DataFrame(flat, columns=[f"x{j}" for j in range(flat.shape[1])])
  meta = pd.DataFrame({"example_id": split.ids.astype(str), "label": split.y, "split": [name] * len(split)})
  return pd.concat([meta, features], axis=1)


def _write_parquet(kept, dataset: Dataset, path, *, overwrite: bool) -> Path:
  import pyarrow as pa
  import pyarrow.parquet as pq

  frames = [_frame(kept, "train")]
  if dataset.test is not None:
    frames.append(_frame(dataset.test, "test"))
  table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
  metadata = dict(table.schema.metadata or {})
  metadata[FEATURE_SHAPE_KEY] = json.dumps(list(dataset.input_shape)).encode()
  table = table.replace_schema_metadata(metadata)
  with atomic_path(path, overwrite=overwrite) as tmp:
    pq.write_table(table, tmp)
  return Path(path)


def _splits(kept: Split, dataset: Dataset) -> dict[str, Split]:
  return {"train": kept, **({"test": dataset.test} if dataset.test is not None else {})}


def _write_tfds(
  kept: Split, dataset: Dataset, subset: Manifest, root: Path, *, name: str | None, version: str, overwrite: bool
) -> Path:
  import tensorflow_datasets as tfds

  if not name or not TFDS_NAME.fullmatch(name):
    raise UserError(
      f"TFDS dataset name {name!r} must be snake_case (a-z, 0-9, _; a letter first), e.g. digits_pruned: pass --name"
    )
  if not VERSION.fullmatch(str(version)):
    raise UserError(f"TFDS version {version!r} must look like 1.0.0")
  final = root / name / version
  check_folder_output(final, overwrite=overwrite, what="TFDS dataset version")
  splits = _splits(kept, dataset)
  class_names = list(dataset.class_names) if dataset.class_names else None
  selection = json.dumps(subset.selection or {}, sort_keys=True, default=str)

  dataset_name = name

  class Export(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder made for this one export: not registered in TFDS's catalog."""

    name = dataset_name
    VERSION = tfds.core.Version(version)

    def _info(self):
      label = (
        tfds.features.ClassLabel(names=class_names)
        if class_names
        else tfds.features.ClassLabel(num_classes=dataset.num_classes)
      )
      return tfds.core.DatasetInfo(
        builder=self,
        description=f"A subset of {dataset.spec} exported by pruning.",
        features=tfds.features.FeaturesDict(
          {
            "x": tfds.features.Tensor(shape=dataset.input_shape, dtype=np.float32),
            "label": label,
            "example_id": tfds.features.Text(),
          }
        ),
        supervised_keys=("x", "label"),
        metadata=tfds.core.MetadataDict(selection=selection, source=dataset.spec, fingerprint=dataset.fingerprint),
      )

    def _log_download_bytes(self):
      """TFDS's "Downloading and preparing dataset" banner: nothing downloads here."""

    def _log_download_done(self):
      """TFDS's "downloaded and prepared" line: `pruning export` says what it wrote."""

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
      part = splits[split]
      for i in range(len(part)):
        yield str(part.ids[i]), {"x": part.x[i], "label": int(part.y[i]), "example_id": str(part.ids[i])}

  # Build in a staging folder and move the finished version into place, so a
  # crash never leaves a half-written dataset under its final name.
  staging = staging_folder(final)
  try:
    builder = Export(data_dir=str(staging / "build"), file_format="array_record")
    with _quiet_tfds():
      builder.download_and_prepare()
    built = staging / "build" / name / version
    for item in built.iterdir():
      os.rename(item, staging / item.name)
    _share_modes(staging)
    publish_folder(
      staging,
      final,
      overwrite=overwrite,
      what="TFDS dataset version",
      marker=f"pruning export of {dataset.spec} as TFDS {name}:{version}\n",
    )
  finally:
    discard_staging(staging)
  return final


def safe_file_name(text, *, what: str) -> str:
  """`text` as a single path component (see `pruning.runtime.atomic.check_path_component`)."""
  return check_path_component(str(text), what=what)


def pixel_mapping(splits) -> tuple[float, float]:
  """(offset, scale) with `(x - offset) * scale` the 0..255 pixel values (see the module doc)."""
  low = float(min(s.x.min() for s in splits))
  high = float(max(s.x.max() for s in splits))
  whole = all(bool(np.all(s.x == np.round(s.x))) for s in splits)
  if whole and low >= 0 and 127 < high <= 255:
    return 0.0, 1.0  # 8-bit images: as they are
  low = min(low, 0.0) if low >= 0 else low
  return low, (255.0 / (high - low) if high > low else 0.0)


def _to_uint8(x: np.ndarray, offset: float, scale: float) -> np.ndarray:
  return np.clip(np.round((x - offset) * scale), 0, 255).astype(np.uint8)


def _write_images(kept: Split, dataset: Dataset, root: Path, *, overwrite: bool) -> Path:
  from PIL import Image

  shape = dataset.input_shape
  if len(shape) != 3 or shape[-1] not in (1, 3):
    raise UserError(
      f"image-folder export needs images of shape (H, W, 1 or 3), this data has {shape}:"
      " export as parquet, npz or tfds instead"
    )
  check_folder_output(root, overwrite=overwrite, what="image folder")
  splits = _splits(kept, dataset)
  names = [
    safe_file_name(n, what="class name") for n in (dataset.class_names or [str(c) for c in range(dataset.num_classes)])
  ]
  offset, scale = pixel_mapping(list(splits.values()))
  staging = staging_folder(root)
  try:
    for split, part in splits.items():
      for label in np.unique(part.y):
        (staging / split / names[label]).mkdir(parents=True)
      for i in range(len(part)):
        file_name = safe_file_name(part.ids[i], what="example id") + ".png"
        pixels = _to_uint8(part.x[i], offset, scale)
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)  # mode L or RGB
        with open(staging / split / names[part.y[i]] / file_name, "xb") as handle:  # "x": ids never collide
          image.save(handle, format="PNG")
    _share_modes(staging)
    publish_folder(
      staging, root, overwrite=overwrite, what="image folder", marker=f"pruning export of {dataset.spec} as images\n"
    )
  finally:
    discard_staging(staging)
  return root


def _share_modes(folder: Path) -> None:
  """Gives everything under `folder` the modes the umask implies."""
  from pruning.runtime.atomic import file_mode, folder_mode

  os.chmod(folder, folder_mode())
  for parent, folders, files in os.walk(folder):
    for name in folders:
      os.chmod(os.path.join(parent, name), folder_mode())
    for name in files:
      os.chmod(os.path.join(parent, name), file_mode())


class _quiet_tfds:
  """TFDS's own progress bars follow ours (shown only where ours are), and are
  put back as they were afterwards."""

  def __enter__(self):
    from tensorflow_datasets.core.utils import tqdm_utils

    from pruning.runtime.progress import progress_enabled

    self._before = tqdm_utils._active
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    tqdm_utils.display_progress_bar(bool(self._before and progress_enabled() and interactive))
    return self

  def __exit__(self, *exc):
    from tensorflow_datasets.core.utils import tqdm_utils

    tqdm_utils.display_progress_bar(self._before)
    return False


def check_export_output(
  path: str | os.PathLike, *, format: str, overwrite: bool, subset=None, name: str | None = None, version: str = "1.0.0"
) -> None:
  """Refuses an output that would replace anything but an earlier export of
  ours, before any work is done."""
  if format not in FORMATS:
    raise unknown_name_error("export format", format, FORMATS)
  protect = (Path(subset),) if subset is not None else ()
  if format in ("ids", "parquet", "npz"):
    check_writable(path, overwrite=overwrite)
    if subset is not None and os.path.lexists(path) and os.path.samefile(path, subset):
      raise UserError(f"output {str(path)!r} is the subset being exported: choose another path")
  elif format == "images":
    check_folder_output(Path(path), overwrite=overwrite, protect=protect, what="image folder")
  elif name and TFDS_NAME.fullmatch(name) and VERSION.fullmatch(str(version)):
    check_folder_output(Path(path) / name / version, overwrite=overwrite, protect=protect, what="TFDS dataset version")
