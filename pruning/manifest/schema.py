"""The manifest's schema: its format, provenance checks and content digest."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from importlib import metadata as importlib_metadata

import pandas as pd

from pruning.errors import UserError

# Which end of a score marks difficult examples.
HARDER_HIGHER = "higher"
HARDER_LOWER = "lower"


FORMAT = "pruning.manifest/2"


# Version 1 had no content digest; it is still read (and `check` says it cannot be verified).
LEGACY_FORMATS = ("pruning.manifest/1",)


METADATA_KEY = b"pruning.provenance"


# SHA-256 over the provenance, the column names and every row, in the file's
# footer metadata: an edited, truncated or reordered table no longer matches.
DIGEST_KEY = b"pruning.digest"


BASE_COLUMNS = ("example_id", "index", "label", "split")


# Rows per Parquet row group: what a streamed scoring job holds at once.
ROW_GROUP_ROWS = 65536


_PACKAGES = ("pruning", "jax", "jaxlib", "flax", "optax", "numpy", "pandas", "pyarrow", "scikit-learn")


def package_versions() -> dict[str, str]:
  versions = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      versions[name] = importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def creation_time() -> str:
  """Now, or `SOURCE_DATE_EPOCH` (seconds since 1970) for reproducible files."""
  epoch = os.environ.get("SOURCE_DATE_EPOCH")
  if not epoch:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
  try:
    moment = datetime.datetime.fromtimestamp(int(epoch.strip()), datetime.UTC)
  except (ValueError, OverflowError, OSError):
    raise UserError(
      f"SOURCE_DATE_EPOCH={epoch[:40]!r} is not a whole number of seconds since 1970 in"
      " 0..253402300799: fix or unset it"
    ) from None
  return moment.isoformat(timespec="seconds")


def seed_column(column: str, seed: int) -> str:
  return f"{column}_seed{seed}"


def std_column(column: str) -> str:
  return f"{column}_std"


class TableDigest:
  """The content digest of a manifest: SHA-256 over its provenance, its column
  names and every row (pandas' per-row hashes, so blocks written one at a
  time give the digest of the whole table)."""

  def __init__(self, provenance: dict):
    self._hash = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode())
    self._columns: str | None = None

  def update(self, frame: pd.DataFrame) -> None:
    columns = json.dumps([str(c) for c in frame.columns])
    if self._columns is None:
      self._columns = columns
      self._hash.update(columns.encode())
    elif columns != self._columns:
      raise ValueError("manifest blocks with different columns")
    if len(frame):
      self._hash.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())

  def hexdigest(self) -> str:
    return "sha256:" + self._hash.hexdigest()


def _problem(source: str, what: str) -> UserError:
  return UserError(f"{source}: the provenance {what}: recreate the manifest with pruning")


def validate_provenance(provenance: dict, *, source: str) -> None:
  """Checks the provenance keys every reader relies on and their types."""
  dataset = provenance.get("dataset")
  if not isinstance(dataset, dict):
    raise _problem(source, "has no `dataset` record")
  if not isinstance(dataset.get("spec"), str) or not isinstance(dataset.get("fingerprint"), str):
    raise _problem(source, "records no dataset spec or fingerprint")
  for key in ("num_classes", "num_train"):
    value = dataset.get(key)
    if key not in dataset:
      continue  # hand-made manifests may omit them; when given they must be sound
    if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "num_classes" else 1):
      raise _problem(source, f"records dataset {key} {value!r}, not a whole number")
  if "tokenizer_json" in provenance and not isinstance(provenance["tokenizer_json"], str):
    raise _problem(source, "records a tokenizer that is not serialized JSON text")
  scores = provenance.get("scores")
  if not isinstance(scores, dict):
    raise _problem(source, "has no `scores` mapping")
  for column, info in scores.items():
    if not isinstance(info, dict):
      raise _problem(source, f"record of score {column!r} is not a mapping")
    if info.get("harder") not in (HARDER_HIGHER, HARDER_LOWER):
      raise _problem(source, f"says score {column!r} is harder when {info.get('harder')!r} (not higher or lower)")
    seeds = info.get("seeds")
    if (
      not isinstance(seeds, list)
      or not seeds
      or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
      raise _problem(source, f"records no seeds for score {column!r}")
  selection = provenance.get("selection")
  if selection is not None:
    if not isinstance(selection, dict):
      raise _problem(source, "selection record is not a mapping")
    counts = selection.get("kept_per_class")
    if (
      not isinstance(selection.get("kept"), int)
      or not isinstance(counts, list)
      or not all(isinstance(c, int) for c in counts)
    ):
      raise _problem(source, "selection record has no kept counts")
    if not isinstance(selection.get("strategy"), str) or not isinstance(selection.get("class_rule"), str):
      raise _problem(source, "selection record names no strategy or class rule")
  validation = provenance.get("validation")
  if validation is not None and (
    not isinstance(validation, dict) or not isinstance(validation.get("per_class_recall"), list)
  ):
    raise _problem(source, "validation record has no per-class recall")


def validate_table(frame: pd.DataFrame, provenance: dict, *, source: str) -> None:
  """Checks columns, dtypes and ids; raises `UserError` naming the first problem."""
  required = list(BASE_COLUMNS)
  for column, info in provenance.get("scores", {}).items():
    required += [column, std_column(column)] + [seed_column(column, s) for s in info["seeds"]]
  missing = [c for c in required if c not in frame.columns]
  if missing:
    raise UserError(f"{source}: column {missing[0]!r} is missing: recreate the manifest")
  for column in ("example_id", "split"):
    if not (pd.api.types.is_string_dtype(frame[column]) or pd.api.types.is_object_dtype(frame[column])):
      raise UserError(f"{source}: column {column!r} has dtype {frame[column].dtype}, expected strings")
  for column in ("index", "label"):
    if not pd.api.types.is_integer_dtype(frame[column]):
      raise UserError(f"{source}: column {column!r} has dtype {frame[column].dtype}, expected integers")
  for column in required[len(BASE_COLUMNS) :]:
    if not pd.api.types.is_float_dtype(frame[column]):
      raise UserError(f"{source}: score column {column!r} has dtype {frame[column].dtype}, expected floats")
  if "is_noisy" in frame.columns and not pd.api.types.is_bool_dtype(frame["is_noisy"]):
    raise UserError(f"{source}: column 'is_noisy' has dtype {frame['is_noisy'].dtype}, expected booleans")
  if "clean_label" in frame.columns and not pd.api.types.is_integer_dtype(frame["clean_label"]):
    raise UserError(f"{source}: column 'clean_label' has dtype {frame['clean_label'].dtype}, expected integers")
  if frame[list(BASE_COLUMNS)].isna().any().any():
    raise UserError(f"{source}: missing values in {list(BASE_COLUMNS)}: recreate the manifest")
  ids = frame["example_id"]
  if not ids.is_unique:
    duplicate = ids[ids.duplicated()].iloc[0]
    raise UserError(f"{source}: example_id {duplicate!r} appears more than once: ids must be unique")
  if not frame["index"].is_unique:
    raise UserError(f"{source}: column 'index' has repeated values: recreate the manifest")
  if len(frame) and frame["label"].min() < 0:
    raise UserError(f"{source}: negative labels: labels must be class indices 0..C-1")
