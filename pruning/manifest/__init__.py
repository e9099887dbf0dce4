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
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.errors import UserError
from pruning.manifest.schema import (
  BASE_COLUMNS,
  DIGEST_KEY,
  FORMAT,
  HARDER_HIGHER,
  HARDER_LOWER,
  LEGACY_FORMATS,
  METADATA_KEY,
  ROW_GROUP_ROWS,
  TableDigest,
  creation_time,
  package_versions,
  seed_column,
  std_column,
  validate_provenance,
  validate_table,
)


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

  def dataset_rows(self, dataset) -> np.ndarray:
    """This manifest's rows in `dataset`'s training split, checked against its ids and labels."""
    self.check_dataset(dataset)
    rows = self.table["index"].to_numpy(np.int64)
    ids = self.table["example_id"].to_numpy().astype(str)
    if rows.size and (rows.max() >= len(dataset.train) or not np.array_equal(dataset.train.ids[rows].astype(str), ids)):
      raise UserError("the subset's ids do not match the dataset's rows: recreate the subset")
    labels = self.table["label"].to_numpy(np.int64)
    if rows.size and not np.array_equal(np.asarray(dataset.train.y)[rows].astype(np.int64), labels):
      raise UserError(
        "the subset's labels differ from the dataset's for the same rows (edited?): recreate the"
        " subset with `pruning select`"
      )
    return rows

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

  def take(self, rows: np.ndarray, *, selection: dict | None) -> Manifest:
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
    from pruning.manifest.build import ManifestWriter  # build imports this module

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


__all__ = [
  "BASE_COLUMNS",
  "DIGEST_KEY",
  "FORMAT",
  "HARDER_HIGHER",
  "HARDER_LOWER",
  "LEGACY_FORMATS",
  "METADATA_KEY",
  "ROW_GROUP_ROWS",
  "Manifest",
  "TableDigest",
  "creation_time",
  "package_versions",
  "seed_column",
  "std_column",
  "validate_provenance",
  "validate_table",
]
