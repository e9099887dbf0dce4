"""The manifest: one row per example, its scores, and where they came from.

Columns (the schema, `FORMAT`):

- `example_id` (string), `index` (int64: row in the training split),
  `label` (int64), `split` (string, `train`);
- for data with injected label noise (`label_noise`): `clean_label` (int64,
  the true label) and `is_noisy` (bool, `label != clean_label`);
- per score column `S` (e.g. `el2n`, or `el2n_epoch3` for a checkpoint):
  `S` the mean over seeds (float64), `S_std` the population standard deviation
  over seeds (float64), and `S_seed<k>` each seed's value (float32), one
  column per seed `k`. Per-seed values are kept as wide columns so one
  Parquet file holds everything and pandas reads it without reshaping.

Provenance is JSON in the Parquet file's metadata under `pruning.provenance`:
dataset spec and fingerprint, model, training settings, seeds, scores (with
their epoch and which end is harder), the pipeline config, package versions
and the creation time (`SOURCE_DATE_EPOCH` is honoured, so files can be made
byte-identical). With a validation split, `validation` holds the proxies'
per-class recall on it (what the `drop` class rule uses). A subset manifest
adds `selection`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import os
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.errors import UserError
from pruning.runtime.atomic import atomic_path

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


@dataclasses.dataclass
class Manifest:
  """A pandas table of examples and scores, with its provenance."""

  table: pd.DataFrame
  provenance: dict

  def __len__(self) -> int:
    return len(self.table)

  @property
  def scores(self) -> dict[str, dict]:
    """{score column: {score, epoch, harder, seeds, ...}}."""
    return self.provenance.get("scores", {})

  @property
  def fingerprint(self) -> str:
    return self.provenance["dataset"]["fingerprint"]

  @property
  def selection(self) -> dict | None:
    return self.provenance.get("selection")

  def seed_values(self, column: str) -> np.ndarray:
    """Per-seed values of a score: an (S, N) array."""
    info = self.score_info(column)
    return np.stack([self.table[seed_column(column, s)].to_numpy() for s in info["seeds"]])

  def score_info(self, column: str) -> dict:
    if column not in self.scores:
      raise UserError(
        f"the manifest has no score {column!r} (it has: {', '.join(self.scores) or 'none'}):"
        f" score it first with `pruning score --score {column}`"
      )
    return self.scores[column]

  def check_dataset(self, dataset) -> None:
    """Refuses a dataset other than the one the manifest was computed on,
    naming the transforms (and so the flags) that differ."""
    if dataset.fingerprint == self.fingerprint:
      return
    from pruning.data import describe_options, recorded_transforms

    recorded = self.provenance["dataset"]
    wanted = describe_options(recorded_transforms(self.provenance))
    loaded = describe_options(recorded_transforms({"dataset": {"transforms": list(dataset.transforms)}}))
    hint = ""
    if wanted != loaded:
      hint = (
        f"; it was made with {wanted or 'no transform options'} and this data was loaded with"
        f" {loaded or 'none'}: pass the same options"
      )
    elif recorded.get("spec") != dataset.spec:
      hint = f"; pass --data {recorded.get('spec')}"
    raise UserError(
      f"the manifest was computed on dataset {recorded['spec']!r} (fingerprint {self.fingerprint[:12]})"
      f" but {dataset.spec!r} has fingerprint {dataset.fingerprint[:12]}{hint or ': the data changed since; rescore'}"
    )

  def take(self, rows: np.ndarray, *, selection: dict) -> Manifest:
    """A subset manifest with the rows at positions `rows`, in `index` order."""
    table = self.table.iloc[np.sort(np.asarray(rows, dtype=np.int64))].reset_index(drop=True)
    provenance = copy.deepcopy(self.provenance)
    provenance["selection"] = selection
    return Manifest(table=table, provenance=provenance)

  def to_parquet(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes atomically, `ROW_GROUP_ROWS` rows per row group; refuses an
    existing file unless `overwrite`."""
    validate_provenance(self.provenance, source="manifest")
    validate_table(self.table, self.provenance, source="manifest")
    with ManifestWriter(path, self.provenance, overwrite=overwrite) as writer:
      for start in range(0, max(len(self.table), 1), ROW_GROUP_ROWS):
        writer.write(self.table.iloc[start : start + ROW_GROUP_ROWS])
    return Path(path)

  @classmethod
  def read_parquet(cls, path: str | os.PathLike, *, verify: bool = True) -> Manifest:
    """Reads and validates a manifest (schema, dtypes, unique ids, and with
    `verify` its content digest: a file changed since pruning wrote it is
    refused; `pruning check` reads without it to list every problem)."""
    from pruning.data.parquet import read_parquet_table

    path = Path(path)
    table = read_parquet_table(
      path,
      missing=f"no manifest at {str(path)!r}: check the path or create it with `pruning score`",
      unreadable=f"{str(path)!r} is not a readable Parquet file ({{error}}; truncated or corrupted?):"
      " recreate it with `pruning score`",
    )
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
      raise UserError(
        f"{str(path)!r} has no pruning provenance, so it is not a manifest: create one with `pruning score`"
      )
    try:
      provenance = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8
      raise UserError(f"{str(path)!r} has corrupted provenance metadata: recreate it") from None
    if not isinstance(provenance, dict) or provenance.get("format") not in (FORMAT, *LEGACY_FORMATS):
      raise UserError(
        f"{str(path)!r} has manifest format {provenance.get('format') if isinstance(provenance, dict) else None!r},"
        f" this version reads {FORMAT!r}: recreate it with this version"
      )
    validate_provenance(provenance, source=str(path))
    from pruning.data.parquet import table_to_pandas

    frame = table_to_pandas(
      table, damaged=f"{str(path)!r} is damaged (its metadata or text do not decode): recreate it with `pruning score`"
    )
    validate_table(frame, provenance, source=str(path))
    manifest = cls(table=frame, provenance=provenance)
    if verify:
      problem = manifest.digest_problem(path)
      if problem:
        raise UserError(problem)
    return manifest

  def digest_problem(self, path: str | os.PathLike) -> str | None:
    """Why the file at `path` (this manifest, as read) fails its content
    digest, or None when it matches (version-1 files have none to check)."""
    import pyarrow.parquet as pq

    if self.provenance.get("format") != FORMAT:
      return None
    recorded = (pq.read_metadata(path).metadata or {}).get(DIGEST_KEY)
    if recorded is None:
      return (
        f"{str(path)!r} has lost its content digest (rewritten outside pruning?), so it cannot be"
        " trusted: recreate it with pruning"
      )
    digest = TableDigest(self.provenance)
    digest.update(self.table)
    if digest.hexdigest() != recorded.decode(errors="replace"):
      return (
        f"{str(path)!r} was changed after pruning wrote it (its rows or provenance no longer"
        " match the recorded digest): recreate it"
      )
    return None


class TableDigest:
  """The content digest of a manifest: SHA-256 over its provenance, its column
  names and every row (pandas' per-row hashes, so blocks written one at a
  time give the digest of the whole table)."""

  def __init__(self, provenance: dict):
    self._hash = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode())
    self._columns = None

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
  scores = provenance.get("scores")
  if not isinstance(scores, dict):
    raise _problem(source, "has no `scores` mapping")
  for column, info in scores.items():
    if not isinstance(info, dict):
      raise _problem(source, f"record of score {column!r} is not a mapping")
    if info.get("harder") not in ("higher", "lower"):
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


def manifest_rows(dataset, score_values: dict[str, np.ndarray], rows: np.ndarray, *, seeds) -> pd.DataFrame:
  """The manifest's rows for training rows `rows`, from (S, len(rows)) score arrays."""
  train = dataset.train  # ids and labels only: features may be mapped from disk
  columns = {
    "example_id": pd.array(train.ids[rows].astype(str), dtype="string"),
    "index": rows.astype(np.int64),
    "label": train.y[rows].astype(np.int64),
    "split": pd.array(np.full(len(rows), "train", dtype=object), dtype="string"),
  }
  if train.clean_y is not None:
    columns["clean_label"] = train.clean_y[rows].astype(np.int64)
    columns["is_noisy"] = train.is_noisy[rows]
  for column, values in score_values.items():
    values = np.asarray(values, np.float32)
    as_float64 = values.astype(np.float64)
    columns[column] = as_float64.mean(axis=0)
    columns[std_column(column)] = as_float64.std(axis=0)
    for seed, row in zip(seeds, values):
      columns[seed_column(column, seed)] = row
  return pd.DataFrame(columns)


def manifest_provenance(
  dataset,
  *,
  score_infos: dict[str, dict],
  models,
  training: dict,
  config: dict | None = None,
  validation: dict | None = None,
  shard: dict | None = None,
) -> dict:
  """What a manifest records about how it was made (see the module docstring)."""
  return {
    "format": FORMAT,
    "dataset": dataset.describe(),
    "model": {"name": models.model, "options": models.model_options},
    "training": training,
    "seeds": list(models.seeds),
    "normalization": models.normalizer.describe(),
    "scores": {c: {**info, "seeds": list(models.seeds)} for c, info in score_infos.items()},
    "config": config,
    **({"validation": validation} if validation is not None else {}),
    **({"shard": shard} if shard is not None else {}),
    "versions": package_versions(),
    "created_at": creation_time(),
  }


def build_manifest(
  dataset,
  score_values: dict[str, np.ndarray],
  *,
  score_infos: dict[str, dict],
  models,
  training: dict,
  config: dict | None = None,
  validation: dict | None = None,
  shard: dict | None = None,
) -> Manifest:
  """Assembles the manifest of the training split (or of one `shard` of its
  rows, see `pruning.shards`) from per-seed score arrays."""
  rows = np.arange(len(dataset.train)) if shard is None else np.arange(shard["start"], shard["stop"])
  provenance = manifest_provenance(
    dataset,
    score_infos=score_infos,
    models=models,
    training=training,
    config=config,
    validation=validation,
    shard=shard,
  )
  return Manifest(table=manifest_rows(dataset, score_values, rows, seeds=models.seeds), provenance=provenance)


class ManifestWriter:
  """Writes a manifest a block of rows at a time (one Parquet row group each),
  so a manifest of any size is written without holding its whole table.

      with ManifestWriter(path, provenance, overwrite=False) as writer:
        for block in blocks:
          writer.write(frame_of(block))

  Atomic like every output: rows go to a temporary file renamed into place
  when the block closes without error. `Manifest.to_parquet` writes through
  this too, so both give the same bytes for the same rows.
  """

  def __init__(self, path: str | os.PathLike, provenance: dict, *, overwrite: bool = False):
    provenance = {**provenance, "format": FORMAT}  # written with a digest: the current format
    self.path, self.provenance, self.overwrite = Path(path), provenance, overwrite
    self.rows = 0
    self._digest = TableDigest(json.loads(json.dumps(provenance, sort_keys=True)))
    self._writer = None
    self._atomic = None

  def __enter__(self) -> ManifestWriter:
    self._atomic = atomic_path(self.path, overwrite=self.overwrite)
    self._tmp = self._atomic.__enter__()
    return self

  def write(self, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    validate_table(frame, self.provenance, source="manifest")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if self._writer is None:
      metadata = dict(table.schema.metadata or {})
      metadata[METADATA_KEY] = json.dumps(self.provenance, sort_keys=True).encode()
      self._schema = table.schema.with_metadata(metadata)
      self._writer = pq.ParquetWriter(self._tmp, self._schema)
    elif table.schema.remove_metadata() != self._schema.remove_metadata():
      raise ValueError(f"manifest block has schema {table.schema}, not {self._schema}")
    table = table.cast(self._schema)
    self._writer.write_table(table)
    # The digest hashes the rows as a reader will see them.
    self._digest.update(table.to_pandas())
    self.rows += len(frame)

  def __exit__(self, kind, error, traceback) -> bool:
    if self._writer is not None:
      if kind is None:
        self._writer.add_key_value_metadata({DIGEST_KEY: self._digest.hexdigest().encode()})
      self._writer.close()
    elif kind is None:
      raise ValueError("no rows written: write at least one (possibly empty) block")
    return self._atomic.__exit__(kind, error, traceback)
