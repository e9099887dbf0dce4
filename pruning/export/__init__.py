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

Each format is an `ExportFormat` registered by name in `EXPORT_FORMATS` from
its own module (`files`, `tfds`, `images`).

Names that become paths are checked: a TFDS name must be snake_case, a
version `X.Y.Z`, and class names and ids used as file names must not hold a
path separator or be `.`/`..`. Nothing is overwritten without `overwrite`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from pruning.data.dataset import Dataset, Split
from pruning.errors import UserError
from pruning.export import files, images, tfds  # noqa: F401  (each registers its formats)
from pruning.export.registry import EXPORT_FORMATS, ExportFormat, register_format
from pruning.manifest import Manifest
from pruning.runtime.validation import check_seed

FORMATS = EXPORT_FORMATS  # the names, as before the registry


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


def copy_ids(ids, rows: np.ndarray) -> np.ndarray:
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
  exporter = EXPORT_FORMATS.get(format)
  kept = dataset.train.take(subset.dataset_rows(dataset))
  if rebalance is not None:
    repeat = rebalanced_rows(kept.y, rebalance, seed=check_seed(seed, "--seed"))
    ids = kept.ids[repeat] if exporter.repeats_ids else copy_ids(kept.ids, repeat)
    kept = Split(x=kept.x[repeat], y=kept.y[repeat], ids=ids)
  return exporter.write(kept, dataset, subset, path, overwrite=overwrite, name=name, version=version)


def check_export_output(
  path: str | os.PathLike, *, format: str, overwrite: bool, subset=None, name: str | None = None, version: str = "1.0.0"
) -> None:
  """Refuses an output that would replace anything but an earlier export of
  ours, before any work is done."""
  EXPORT_FORMATS.get(format).check_output(path, overwrite=overwrite, subset=subset, name=name, version=version)


__all__ = [
  "EXPORT_FORMATS",
  "ExportFormat",
  "check_export_output",
  "copy_ids",
  "export_subset",
  "rebalanced_rows",
  "register_format",
]
