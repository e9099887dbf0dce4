"""Manifest round trip with provenance, validation of bad files, fingerprint checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import pruning
from pruning import Manifest, UserError
from pruning.manifest import METADATA_KEY


def test_round_trip_keeps_table_and_provenance(linear_manifest, tmp_path):
  path = linear_manifest.to_parquet(tmp_path / "m.parquet")
  back = Manifest.read_parquet(path)
  pd.testing.assert_frame_equal(back.table, linear_manifest.table)
  assert back.provenance == json.loads(json.dumps(linear_manifest.provenance))
  prov = back.provenance
  assert prov["dataset"]["spec"] == "digits" and len(prov["dataset"]["fingerprint"]) == 64
  assert prov["model"]["name"] == "linear" and prov["seeds"] == [0, 1]
  assert prov["training"]["epochs"] == 1 and prov["versions"]["jax"]
  assert "created_at" in prov
  assert list(back.table.columns[:4]) == ["example_id", "index", "label", "split"]
  assert back.table["el2n_seed1"].dtype == np.float32 and back.table["el2n"].dtype == np.float64
  np.testing.assert_array_equal(back.seed_values("el2n")[1], back.table["el2n_seed1"])


def test_existing_file_is_never_overwritten(linear_manifest, tmp_path):
  path = tmp_path / "m.parquet"
  path.write_text("precious")
  with pytest.raises(UserError, match="--overwrite"):
    linear_manifest.to_parquet(path)
  assert path.read_text() == "precious"
  linear_manifest.to_parquet(path, overwrite=True)
  assert len(Manifest.read_parquet(path)) == len(linear_manifest)
  assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"], "no temporary files left behind"


def _rewrite(tmp_path, manifest, table):
  import pyarrow as pa

  arrow = pa.Table.from_pandas(table, preserve_index=False)
  metadata = {METADATA_KEY: json.dumps(manifest.provenance).encode()}
  path = tmp_path / "edited.parquet"
  pq.write_table(arrow.replace_schema_metadata(metadata), path)
  return path


@pytest.mark.parametrize(
  "edit,message",
  [
    (lambda t: t.assign(example_id=t["example_id"].where(t.index != 1, t["example_id"][0])), "more than once"),
    (lambda t: t.drop(columns=["el2n_seed0"]), "'el2n_seed0' is missing"),
    (lambda t: t.assign(label=t["label"].astype(float)), "expected integers"),
    (lambda t: t.assign(el2n=t["el2n"].astype(str)), "expected floats"),
  ],
)
def test_reader_validates_schema(linear_manifest, tmp_path, edit, message):
  path = _rewrite(tmp_path, linear_manifest, edit(linear_manifest.table.copy()))
  with pytest.raises(UserError, match=message):
    Manifest.read_parquet(path)


def test_reader_refuses_non_manifests(linear_manifest, tmp_path):
  plain = tmp_path / "plain.parquet"
  pd.DataFrame({"a": [1]}).to_parquet(plain)
  with pytest.raises(UserError, match="not a manifest"):
    Manifest.read_parquet(plain)
  good = linear_manifest.to_parquet(tmp_path / "good.parquet")
  truncated = tmp_path / "truncated.parquet"
  truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
  with pytest.raises(UserError, match="truncated or corrupted"):
    Manifest.read_parquet(truncated)
  with pytest.raises(UserError, match="no manifest"):
    Manifest.read_parquet(tmp_path / "missing.parquet")


def test_fingerprint_mismatch_is_refused(linear_manifest, tmp_path):
  x, y = np.ones((10, 3), np.float32), np.arange(10) % 2
  with open(tmp_path / "other.npz", "wb") as handle:
    np.savez(handle, x=x, y=y)
  other = pruning.load_dataset(f"npz:{tmp_path / 'other.npz'}")
  with pytest.raises(UserError, match="fingerprint"):
    linear_manifest.check_dataset(other)


def test_missing_score_names_the_fix(linear_manifest):
  with pytest.raises(UserError, match="pruning score --score grand"):
    linear_manifest.score_info("grand")


def test_source_date_epoch_makes_files_byte_identical(linear_manifest, tmp_path, monkeypatch):
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
  from pruning.manifest import creation_time

  assert creation_time() == "2023-11-14T22:13:20+00:00"
