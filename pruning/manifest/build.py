"""Building manifests from scores: rows, provenance, streamed writing, and a subset's rows in its dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pruning.manifest import Manifest
from pruning.manifest.schema import (
  DIGEST_KEY,
  FORMAT,
  METADATA_KEY,
  TableDigest,
  creation_time,
  package_versions,
  seed_column,
  std_column,
  validate_table,
)
from pruning.runtime.atomic import atomic_path


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
  proxy_accuracy: dict | None = None,
  shard: dict | None = None,
) -> dict:
  """What a manifest records about how it was made (see the module docstring)."""
  from pruning.models.pretrained import checkpoint_record

  return {
    "format": FORMAT,
    "dataset": dataset.describe(),
    "model": {
      "name": models.model,
      "options": models.model_options,
      **checkpoint_record(models.model, models.model_options),
    },
    "training": training,
    "seeds": list(models.seeds),
    "normalization": models.normalizer.describe(),
    "scores": {c: {**info, "seeds": list(models.seeds)} for c, info in score_infos.items()},
    "config": config,
    # Text: the tokenizer itself, so every later command tokenises the data to
    # the same ids (a trained vocabulary is not reproducible across processes).
    **({"tokenizer_json": dataset.tokenizer_json} if getattr(dataset, "tokenizer_json", None) else {}),
    **({"validation": validation} if validation is not None else {}),
    **({"proxy_accuracy": proxy_accuracy} if proxy_accuracy is not None else {}),
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
  proxy_accuracy: dict | None = None,
  shard: dict | None = None,
) -> Manifest:
  """Assembles the manifest of the training split (or of one `shard` of its
  rows, see `pruning.jobs.parts`) from per-seed score arrays."""
  rows = np.arange(len(dataset.train)) if shard is None else np.arange(shard["start"], shard["stop"])
  provenance = manifest_provenance(
    dataset,
    score_infos=score_infos,
    models=models,
    training=training,
    config=config,
    validation=validation,
    proxy_accuracy=proxy_accuracy,
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
    self._writer: Any = None  # a pyarrow ParquetWriter once the first block is written
    self._atomic: Any = None

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
