"""A recorded job: the config a manifest was made with, and the check that
data loaded again is the data it recorded (used by re-runs, runs and Ray
workers alike)."""

from __future__ import annotations

from pathlib import Path

from pruning.config import PipelineConfig, parse_config
from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.models.pretrained import changed_checkpoint


def config_from_manifest(path: str | Path) -> tuple[PipelineConfig, str, str | None]:
  """The config a manifest was made with, the dataset fingerprint it must
  reproduce and, for text, the tokenizer (serialized) it was made with."""
  manifest = Manifest.read_parquet(path)
  recorded = manifest.provenance.get("config")
  if not recorded:
    raise UserError(
      f"{str(path)!r} records no config (made by an older version or by the Python API"
      " without one): re-run it from its YAML file instead"
    )
  config = parse_config(recorded, source=f"the provenance of {path}", import_plugins=False)
  changed = changed_checkpoint(manifest.provenance.get("model") or {})
  if changed:
    raise UserError(f"{changed}, so the run cannot be repeated")
  return config, manifest.fingerprint, manifest.provenance.get("tokenizer_json")


def check_fingerprint(dataset, fingerprint: str | None, *, source) -> None:
  if fingerprint is not None and dataset.fingerprint != fingerprint:
    raise UserError(
      f"the data loaded for {source} has fingerprint {dataset.fingerprint[:12]}, not the recorded"
      f" {fingerprint[:12]}: the dataset changed since, so the run cannot be reproduced"
    )


SAVED_TOKENIZER = "tokenizer.json"  # a text job's tokenizer, in its run or resume folder


def saved_tokenizer(folder: Path) -> str | None:
  """The tokenizer a text job saved in `folder`, which a resumed job tokenises
  with (a WordPiece vocabulary trained again may differ); None when there is
  none. A link standing there is never read."""
  path = Path(folder) / SAVED_TOKENIZER
  return path.read_text(encoding="utf-8") if path.is_file() and not path.is_symlink() else None
