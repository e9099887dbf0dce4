"""`pruning check`: sound manifests and run folders pass; each kind of damage is named."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pruning
from pruning.cli import main
from pruning.jobs.check import check_manifest, check_path


def test_a_sound_manifest_and_subset_pass(linear_manifest, tmp_path, capsys):
  path = linear_manifest.to_parquet(tmp_path / "m.parquet")
  assert check_path(path) == []
  subset = pruning.select(linear_manifest, keep=0.3, strategy="hardest", class_rule="balanced", score="el2n")
  assert check_manifest(subset) == []
  assert main(["check", str(path)]) == 0 and "ok" in capsys.readouterr().out


def damaged(manifest, change):
  copy = pruning.Manifest(manifest.table.copy(), json.loads(json.dumps(manifest.provenance)))
  change(copy)
  return copy


@pytest.mark.parametrize(
  "change, message",
  [
    (lambda m: m.table.__setitem__("el2n", m.table["el2n"].where(m.table.index != 3, np.nan)), "NaN or infinite"),
    (lambda m: m.table.__setitem__("el2n", m.table["el2n"] + 0.1), "not the mean of its per-seed"),
    (lambda m: m.table.__setitem__("loss_std", m.table["loss_std"] * 2 + 1), "standard deviation"),
    (lambda m: m.provenance["dataset"].__setitem__("num_classes", 5), "out of range for 5 classes"),
    (lambda m: m.provenance["dataset"].__setitem__("num_train", 100), "beyond the 100 training examples"),
  ],
)
def test_each_kind_of_damage_is_named(linear_manifest, change, message):
  problems = check_manifest(damaged(linear_manifest, change))
  assert any(message in p for p in problems), problems


def test_a_subset_that_disagrees_with_its_selection_record(linear_manifest):
  subset = pruning.select(linear_manifest, keep=100, strategy="random")
  bad = pruning.Manifest(subset.table.iloc[:90].reset_index(drop=True), subset.provenance)
  problems = check_manifest(bad)
  assert any("records 100 kept" in p for p in problems) and any("per class" in p for p in problems)


@pytest.mark.slow
def test_run_folder_checks(tmp_path, capsys):
  config = tmp_path / "tiny.yaml"
  config.write_text(
    "name: tiny\ndataset: digits\nmodel: linear\ntraining: {epochs: 1, batch_size: 128}\n"
    "proxy: {seeds: 1}\nscores: [el2n]\n"
    "selections:\n  - {name: hard, score: el2n, keep: 0.3}\nretrain: {seeds: 1}\n"
  )
  run_dir = tmp_path / "run"
  assert main(["run", str(config), "--output", str(run_dir), "--no-progress"]) == 0
  capsys.readouterr()
  assert main(["check", str(run_dir)]) == 0
  # Every file the run wrote is a declared output, and all but the timings and the record itself are recorded.
  from pruning.jobs.locking import LOCK_NAME
  from pruning.jobs.run_folder import RUN_OUTPUTS, RUN_RECORD

  written = {p.name for p in run_dir.iterdir() if p.is_file()} - {LOCK_NAME}
  recorded = set(json.loads((run_dir / RUN_RECORD).read_text())["files"])
  assert written <= set(RUN_OUTPUTS) and recorded == written - {"timings.json", RUN_RECORD} | {"subsets/hard.parquet"}
  # A declared output this run did not write (a stale tokenizer) is named.
  (run_dir / "tokenizer.json").write_text("{}")
  assert main(["check", str(run_dir)]) == 1 and "tokenizer.json did not come from this run" in capsys.readouterr().out
  (run_dir / "tokenizer.json").unlink()
  # A subset from another run's manifest, and a truncated Parquet file, are both reported.
  other = pruning.select(pruning.Manifest.read_parquet(run_dir / "manifest.parquet"), keep=10, strategy="random")
  other.table["example_id"] = other.table["example_id"] + "-x"
  other.to_parquet(run_dir / "subsets" / "hard.parquet", overwrite=True)
  (run_dir / "subsets" / "broken.parquet").write_bytes((run_dir / "manifest.parquet").read_bytes()[:200])
  (run_dir / "results.csv").unlink()
  assert main(["check", str(run_dir)]) == 1
  out = capsys.readouterr().out
  assert "not in the manifest" in out and "truncated or corrupted" in out and "results.csv is missing" in out
  assert "subsets/ holds ['broken', 'hard']" in out
  assert main(["check", str(tmp_path / "nowhere")]) == 2


@pytest.mark.slow
def test_a_second_job_on_the_same_run_folder_is_refused(tmp_path):
  """The lock is held by another process (a real second job), then released when it dies."""
  import time

  from conftest import lock_held_elsewhere

  from pruning.jobs.locking import folder_lock

  folder = tmp_path / "run"
  with lock_held_elsewhere(folder) as holder:
    with pytest.raises(pruning.UserError, match=f"pid {holder.pid}.*another --output"):
      with folder_lock(folder):
        pass
  time.sleep(0.1)
  with folder_lock(folder):  # a killed holder leaves no stale lock
    pass
