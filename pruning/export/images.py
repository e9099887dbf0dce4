"""Export as an image folder `OUT/<split>/<class>/<id>.png` (the layout of TFDS's and torchvision's ImageFolder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pruning.data.dataset import Dataset, Split
from pruning.errors import UserError
from pruning.export.registry import export_splits, register_format, share_modes
from pruning.runtime.atomic import check_path_component
from pruning.runtime.folders import check_folder_output, discard_staging, publish_folder, staging_folder


def check_image_output(path, *, overwrite: bool, subset=None, **_) -> None:
  protect = (Path(subset),) if subset is not None else ()
  check_folder_output(Path(path), overwrite=overwrite, protect=protect, what="image folder")


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


@register_format("images", check_output=check_image_output, description="PNG files OUT/SPLIT/CLASS/ID.png")
def write_images(kept: Split, dataset: Dataset, subset, root, *, overwrite: bool, **_) -> Path:
  root = Path(root)
  from PIL import Image

  shape = dataset.input_shape
  if len(shape) != 3 or shape[-1] not in (1, 3):
    raise UserError(
      f"image-folder export needs images of shape (H, W, 1 or 3), this data has {shape}:"
      " export as parquet, npz or tfds instead"
    )
  check_folder_output(root, overwrite=overwrite, what="image folder")
  splits = export_splits(kept, dataset)
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
    share_modes(staging)
    publish_folder(
      staging, root, overwrite=overwrite, what="image folder", marker=f"pruning export of {dataset.spec} as images\n"
    )
  finally:
    discard_staging(staging)
  return root
