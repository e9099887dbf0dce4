"""Sharded scoring: parts of `--shard I/N` merge into the unsharded manifest;
merge refuses parts that are missing, repeated or from another job."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pruning_process

import pruning
from pruning.cli import main
from pruning.jobs.parts import merge_parts, parse_shard, shard_info

SCORE = [
  "score",
  "--data",
  "digits",
  "--validation",
  "0.1",
  "--model",
  "mlp",
  "--epochs",
  "2",
  "--seeds",
  "2",
  "--score",
  "el2n",
  "--score",
  "aum",
  "--score",
  "vog",
  "--score",
  "grand",
  "--no-progress",
]


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


@pytest.mark.slow
def test_parts_merge_into_the_unsharded_manifest(parts, capsys):
  whole = pruning.Manifest.read_parquet(parts / "whole.parquet")
  pieces = [pruning.Manifest.read_parquet(parts / f"part{i}.parquet") for i in range(3)]
  assert [len(p) for p in pieces] == [479, 479, 479] or sum(len(p) for p in pieces) == len(whole)
  # Shard in any order; the merged table is in row order.
  assert (
    main(
      [
        "merge",
        str(parts / "part2.parquet"),
        str(parts / "part0.parquet"),
        str(parts / "part1.parquet"),
        "--out",
        str(parts / "merged.parquet"),
      ]
    )
    == 0
  )
  merged = pruning.Manifest.read_parquet(parts / "merged.parquet")
  assert merged.table["example_id"].tolist() == whole.table["example_id"].tolist()
  for column in whole.table.columns:
    if column in ("example_id", "split"):
      continue
    np.testing.assert_allclose(merged.table[column], whole.table[column], rtol=1e-5, atol=1e-6, err_msg=column)
  assert merged.provenance == whole.provenance
  # Per-example work does not depend on which other rows share the job: the same file, byte for byte.
  assert (parts / "merged.parquet").read_bytes() == (parts / "whole.parquet").read_bytes()


@pytest.mark.slow
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


@pytest.mark.slow
def test_shards_train_the_proxies_once(parts, tmp_path, capsys):
  """--train-only --proxies trains once; shards given the folder load it and
  merge into the same manifest as the unsharded job, byte for byte."""
  import os

  proxies = tmp_path / "proxies"
  env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
  assert main([*SCORE, "--proxies", str(proxies), "--train-only"]) == 0
  assert "trained 2 proxies" in capsys.readouterr().out
  trained = sorted(p.name for p in proxies.iterdir() if p.name.startswith("epoch-"))
  assert trained == ["epoch-000002"]
  # Two shards at once share the folder and find the training done.
  jobs = [
    pruning_process(*SCORE, "--proxies", proxies, "--shard", f"{i}/2", "--out", tmp_path / f"part{i}.parquet", env=env)
    for i in range(2)
  ]
  for job in jobs:
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert "using the proxies" in err and "proxy training" not in err
  assert (
    main(
      [
        "merge",
        str(tmp_path / "part0.parquet"),
        str(tmp_path / "part1.parquet"),
        "--out",
        str(tmp_path / "merged.parquet"),
      ]
    )
    == 0
  )
  assert (tmp_path / "merged.parquet").read_bytes() == (parts / "whole.parquet").read_bytes()
  # A proxies folder of another run is refused rather than silently reused.
  assert main([*SCORE, "--seeds", "3", "--proxies", str(proxies), "--out", str(tmp_path / "x.parquet")]) == 2
  assert "belong to another training run" in capsys.readouterr().err


@pytest.mark.slow
def test_concurrent_shards_with_an_empty_proxies_folder_train_once(tmp_path):
  """Shards started together: one trains under the folder's lock, the other waits and loads."""
  import os

  small = [*SCORE[: SCORE.index("--score")], "--score", "el2n", "--no-progress"]
  proxies = tmp_path / "proxies"
  env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
  jobs = [
    pruning_process(*small, "--proxies", proxies, "--shard", f"{i}/2", "--out", tmp_path / f"part{i}.parquet", env=env)
    for i in range(2)
  ]
  errs = []
  for job in jobs:
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    errs.append(err)
  assert sum("using the proxies" in e for e in errs) == 1
  assert main([*small, "--out", str(tmp_path / "whole.parquet")]) == 0
  merged = merge_parts([pruning.Manifest.read_parquet(tmp_path / f"part{i}.parquet") for i in range(2)])
  whole = pruning.Manifest.read_parquet(tmp_path / "whole.parquet")
  assert merged.table.equals(whole.table)


def test_train_only_needs_a_proxies_folder(tmp_path, capsys):
  assert main([*SCORE, "--train-only"]) == 2
  assert "--proxies DIR" in capsys.readouterr().err
  assert main([*SCORE]) == 2
  assert "needs --out" in capsys.readouterr().err
