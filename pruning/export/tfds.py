"""Export as a new versioned TFDS dataset `OUT/NAME/VERSION/` in ArrayRecord files (written without TensorFlow)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from pruning.data.dataset import Dataset, Split
from pruning.errors import UserError
from pruning.export.registry import export_splits, register_format, share_modes
from pruning.manifest import Manifest
from pruning.runtime.folders import check_folder_output, discard_staging, publish_folder, staging_folder

TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*")
VERSION = re.compile(r"\d+\.\d+\.\d+")


def check_tfds_output(path, *, overwrite: bool, subset=None, name: str | None = None, version: str = "1.0.0") -> None:
  """Refuses to replace a dataset version that is not an earlier export of ours (bad names fail when writing)."""
  protect = (Path(subset),) if subset is not None else ()
  if name and TFDS_NAME.fullmatch(name) and VERSION.fullmatch(str(version)):
    check_folder_output(Path(path) / name / version, overwrite=overwrite, protect=protect, what="TFDS dataset version")


@register_format("tfds", check_output=check_tfds_output, description="a TFDS dataset OUT/NAME/VERSION (--name)")
def write_tfds(
  kept: Split, dataset: Dataset, subset: Manifest, root, *, name: str | None, version: str, overwrite: bool, **_
) -> Path:
  root = Path(root)
  import tensorflow_datasets as tfds

  if not name or not TFDS_NAME.fullmatch(name):
    raise UserError(
      f"TFDS dataset name {name!r} must be snake_case (a-z, 0-9, _; a letter first), e.g. digits_pruned: pass --name"
    )
  if not VERSION.fullmatch(str(version)):
    raise UserError(f"TFDS version {version!r} must look like 1.0.0")
  final = root / name / version
  check_folder_output(final, overwrite=overwrite, what="TFDS dataset version")
  splits = export_splits(kept, dataset)
  class_names = list(dataset.class_names) if dataset.class_names else None
  selection = json.dumps(subset.selection or {}, sort_keys=True, default=str)

  dataset_name = name
  text_columns = list(dataset.text_columns) if dataset.is_text else []

  class Export(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]  # TFDS's hook
    """A builder made for this one export: not registered in TFDS's catalog."""

    name = dataset_name
    VERSION = tfds.core.Version(version)

    def _info(self):
      label = (
        tfds.features.ClassLabel(names=class_names)
        if class_names
        else tfds.features.ClassLabel(num_classes=dataset.num_classes)
      )
      # Text data keeps its text: one `Text` feature per text column (what tfds:NAME reads back).
      inputs = (
        {column: tfds.features.Text() for column in text_columns}
        if text_columns
        else {"x": tfds.features.Tensor(shape=dataset.input_shape, dtype=np.float32)}
      )
      return tfds.core.DatasetInfo(
        builder=self,
        description=f"A subset of {dataset.spec} exported by pruning.",
        features=tfds.features.FeaturesDict({**inputs, "label": label, "example_id": tfds.features.Text()}),
        supervised_keys=(text_columns[0] if text_columns else "x", "label"),
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
        if text_columns:
          row = part.text[i] if part.text.ndim == 2 else [part.text[i]]
          inputs = dict(zip(text_columns, (str(t) for t in row)))
        else:
          inputs = {"x": part.x[i]}
        yield str(part.ids[i]), {**inputs, "label": int(part.y[i]), "example_id": str(part.ids[i])}

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
    share_modes(staging)
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
