"""Sharded scoring: parts of `--shard I/N` merge into the unsharded manifest;
merge refuses parts that are missing, repeated or from another job."""

from __future__ import annotations

import numpy as np
import pytest

import pruning
from pruning.cli import main
from pruning.shards import merge_parts, parse_shard, shard_info

SCORE = ["score", "--data", "digits", "--validation", "0.1", "--model", "mlp", "--epochs", "2", "--seeds", "2",
         "--score", "el2n", "--score", "aum", "--score", "vog", "--score", "grand", "--no-progress"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
  folder = tmp_path_factory.mktemp("shards")
  import os
  os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
  try:
    assert main([*SCORE, "--out", str(folder / "whole.parquet")]) == 0
    for i in range(3):
      assert main([*SCORE, "--shard", f"{i}/3", "--out", str(folder / f"part{i}.parquet")]) == 0
  finally:
    del os.environ["SOURCE_DATE_EPOCH"]
  return folder


def test_parts_merge_into_the_unsharded_manifest(parts, capsys):
  whole = pruning.Manifest.read_parquet(parts / "whole.parquet")
  pieces = [pruning.Manifest.read_parquet(parts / f"part{i}.parquet") for i in range(3)]
  assert [len(p) for p in pieces] == [479, 479, 479] or sum(len(p) for p in pieces) == len(whole)
  # Shard in any order; the merged table is in row order.
  assert main(["merge", str(parts / "part2.parquet"), str(parts / "part0.parquet"), str(parts / "part1.parquet"),
               "--out", str(parts / "merged.parquet")]) == 0
  merged = pruning.Manifest.read_parquet(parts / "merged.parquet")
  assert merged.table["example_id"].tolist() == whole.table["example_id"].tolist()
  for column in whole.table.columns:
    if column in ("example_id", "split"):
      continue
    np.testing.assert_allclose(merged.table[column], whole.table[column], rtol=1e-5, atol=1e-6, err_msg=column)
  assert merged.provenance == whole.provenance
  # Per-example work does not depend on which other rows share the job: the same file, byte for byte.
  assert (parts / "merged.parquet").read_bytes() == (parts / "whole.parquet").read_bytes()


def test_merge_names_what_is_missing_repeated_or_foreign(parts, tmp_path, capsys):
  pieces = {i: pruning.Manifest.read_parquet(parts / f"part{i}.parquet") for i in range(3)}
  with pytest.raises(pruning.UserError, match="shards 1/3 are missing"):
    merge_parts([pieces[0], pieces[2]])
  with pytest.raises(pruning.UserError, match="appears twice"):
    merge_parts([pieces[0], pieces[1], pieces[1], pieces[2]])
  foreign = pruning.Manifest(pieces[1].table, {**pieces[1].provenance, "seeds": [7, 8]})
  with pytest.raises(pruning.UserError, match="another job.*seeds"):
    merge_parts([pieces[0], foreign, pieces[2]])
  whole = pruning.Manifest.read_parquet(parts / "whole.parquet")
  with pytest.raises(pruning.UserError, match="not a part file"):
    merge_parts([whole])
  code = main(["merge", str(parts / "part0.parquet"), "--out", str(tmp_path / "m.parquet")])
  assert code == 2 and "missing" in capsys.readouterr().err


def test_shard_specs():
  assert parse_shard("2/8") == (2, 8)
  for bad in ("8/8", "-1/4", "a/b", "3"):
    with pytest.raises(pruning.UserError, match="I/N"):
      parse_shard(bad)
  blocks = [shard_info(10, i, 3) for i in range(3)]
  assert [(b["start"], b["stop"]) for b in blocks] == [(0, 3), (3, 6), (6, 10)]
