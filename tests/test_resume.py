"""Resumable jobs: training resumed from a checkpoint equals uninterrupted training
bit for bit, and real runs killed with SIGKILL at random moments resume with the
same command to the same outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import pruning_process

import pruning
from pruning.scores.vog import VoGAccumulator
from pruning.training import TrainConfig, train_models
from pruning.training.checkpointing import TrainingCheckpointer


class Crash(Exception):
  pass


class CrashAt:
  """An epoch hook that dies at the end of one epoch, before that epoch's checkpoint."""

  def __init__(self, epoch):
    self.epoch = epoch

  def __call__(self, epoch, *args):
    if epoch == self.epoch:
      raise Crash

  def state_dict(self):
    return {}

  def load_state_dict(self, state):
    pass


def train(digits, checkpointer, hooks):
  return train_models(
    pruning.TrainData(x=digits.train.x, y=digits.train.y, num_classes=10),
    pruning.ModelSpec(
      model="mlp", options={"hidden": [32]}, seeds=[0, 1], training=TrainConfig(epochs=5, batch_size=64)
    ),
    checkpoint_epochs=[0, 2],
    epoch_hooks=hooks,
    checkpointer=checkpointer,
    progress=False,
  )


@pytest.mark.slow
@pytest.mark.parametrize("crash_epoch", [2, 4])
def test_resumed_training_equals_uninterrupted_bit_for_bit(digits, tmp_path, crash_epoch):
  reference_vog = VoGAccumulator(digits.train.x, digits.train.y)
  reference = train(digits, None, [reference_vog])
  checkpointer = TrainingCheckpointer(tmp_path / "ckpt")
  with pytest.raises(Crash):
    train(digits, checkpointer, [VoGAccumulator(digits.train.x, digits.train.y), CrashAt(crash_epoch)])
  assert checkpointer.latest_epoch() == crash_epoch - 1
  vog = VoGAccumulator(digits.train.x, digits.train.y)
  resumed = train(digits, checkpointer, [vog, CrashAt(-1)])
  for a, b in zip(jax.tree.leaves(reference.state), jax.tree.leaves(resumed.state)):
    assert np.array_equal(a, b)
  for epoch in (0, 2):
    for a, b in zip(jax.tree.leaves(reference.checkpoints[epoch]), jax.tree.leaves(resumed.checkpoints[epoch])):
      assert np.array_equal(a, b)
  assert reference.loss_history == resumed.loss_history
  for name, values in reference.dynamics.items():
    assert np.array_equal(values, resumed.dynamics[name]), name
  assert np.array_equal(reference_vog.raw(), vog.raw())


@pytest.mark.slow
def test_a_checkpoint_of_another_run_is_refused(digits, tmp_path):
  checkpointer = TrainingCheckpointer(tmp_path / "ckpt")
  with pytest.raises(Crash):
    train(digits, checkpointer, [CrashAt(3)])
  with pytest.raises(pruning.UserError, match="another training run"):
    train_models(
      pruning.TrainData(x=digits.train.x, y=digits.train.y, num_classes=10),
      pruning.ModelSpec(
        model="mlp", options={"hidden": [32]}, seeds=[0, 2], training=TrainConfig(epochs=5, batch_size=64)
      ),
      checkpointer=checkpointer,
      epoch_hooks=[CrashAt(-1)],
      checkpoint_epochs=[0, 2],
      progress=False,
    )


CONFIG = """name: killed
dataset: {spec: digits, validation: 0.1}
model: mlp
model_options: {hidden: [64]}
training: {epochs: 6, batch_size: 64}
proxy: {seeds: 3, epochs: 6}
scores: [el2n, aum, vog, el2n@4]
selections:
  - {name: hard, score: el2n, keep: 0.5, class_rule: drop}
  - {name: cover, score: aum, strategy: ccs, keep: 0.3}
retrain: {seeds: 2}
"""


def run_command(args, env, *, kill_after=None, kill_when=None):
  """Runs `pruning ARGS`; SIGKILLs it `kill_after` seconds in, or as soon as `kill_when()` is true.

  Returns the exit code.
  """
  process = pruning_process(*args, "--no-progress", env=env, stdout=subprocess.DEVNULL)
  if kill_after is None and kill_when is None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return 0
  deadline = time.monotonic() + (600 if kill_after is None else kill_after)
  while process.poll() is None and time.monotonic() < deadline and not (kill_when and kill_when()):
    time.sleep(0.01)
  if process.poll() is None:
    process.send_signal(signal.SIGKILL)
  process.wait()
  return process.returncode


def no_partial_file_under_a_final_name(folder: Path):
  import pyarrow.parquet as pq

  for path in folder.rglob("*.parquet"):
    if path.name.startswith("."):
      continue
    if path.name == "manifest.parquet" or path.parent.name == "subsets":
      pruning.Manifest.read_parquet(path)  # complete, valid and matching its digest, or the read fails
    else:
      pq.read_table(path)  # results and noise tables: complete, or the read fails


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_same_outputs(tmp_path):
  # Checkpoints every epoch, not every two minutes: kills land between saved epochs.
  env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PRUNING_CHECKPOINT_SECONDS": "0"}
  config = tmp_path / "killed.yaml"
  config.write_text(CONFIG)
  reference = tmp_path / "reference"
  started = time.perf_counter()
  run_command(["run", config, "--output", reference], env)
  duration = time.perf_counter() - started
  rng = np.random.default_rng(int(os.environ.get("PRUNING_KILL_SEED", "0")))
  folder = tmp_path / "killed"
  kills = 0
  for _attempt in range(12):
    # Kill points spread over the whole job (interpreter start, training, scoring, writing).
    code = run_command(["run", config, "--output", folder], env, kill_after=float(rng.uniform(0.3, duration)))
    if code == 0:
      break
    kills += 1
    assert code == -signal.SIGKILL
    no_partial_file_under_a_final_name(folder)
  else:
    run_command(["run", config, "--output", folder], env)
  if (folder / ".resume").exists():
    run_command(["run", config, "--output", folder], env)
  assert kills >= 1, "the job finished before it could be killed: lengthen it"
  assert not (folder / ".resume").exists()
  # Byte for byte, the report included (timings live in timings.json, apart).
  for name in ("manifest.parquet", "subsets/hard.parquet", "subsets/cover.parquet", "report.json"):
    assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
  pd.testing.assert_frame_equal(
    pd.read_parquet(folder / "results.parquet"), pd.read_parquet(reference / "results.parquet")
  )
  assert not list(folder.rglob(".*.tmp"))


@pytest.mark.slow
def test_a_killed_score_job_resumes_from_its_checkpoint(tmp_path):
  env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PRUNING_CHECKPOINT_SECONDS": "0"}
  args = [
    "score",
    "--data",
    "digits",
    "--model",
    "mlp",
    "--epochs",
    "6",
    "--batch-size",
    "16",
    "--seeds",
    "2",
    "--score",
    "el2n",
    "--score",
    "forgetting",
  ]
  run_command([*args, "--out", tmp_path / "reference.parquet"], env)
  out = tmp_path / "m.parquet"
  partial = tmp_path / ".m.parquet.partial"
  # Killed as soon as the first epoch's checkpoint appears, however fast this machine is.
  checkpointed = lambda: (partial / "proxy").is_dir() and any((partial / "proxy").glob("epoch-*"))
  assert run_command([*args, "--out", out], env, kill_when=checkpointed) == -signal.SIGKILL
  assert not out.exists()
  assert any((partial / "proxy").glob("epoch-0*")), "no checkpoint was written before the kill"
  run_command([*args, "--out", out], env)
  assert out.read_bytes() == (tmp_path / "reference.parquet").read_bytes()
  assert not partial.exists()


@pytest.mark.slow
def test_a_finished_run_run_again_does_nothing_and_a_half_readied_folder_starts_afresh(tmp_path, capsys):
  """A job killed after it wrote everything (a Slurm requeue runs it again), and one killed while it
  readied its folder: the same command succeeds and the outputs are those of one run."""
  from pruning.cli import main

  config = tmp_path / "tiny.yaml"
  config.write_text(
    "name: tiny\ndataset: digits\nmodel: linear\ntraining: {epochs: 1, batch_size: 256}\n"
    "proxy: {seeds: 1, epochs: 1}\nscores: [el2n]\n"
    "selections:\n  - {name: hard, score: el2n, keep: 0.3}\nretrain: {seeds: 1}\n"
  )
  run = tmp_path / "run"
  assert main(["run", str(config), "--output", str(run), "--no-progress"]) == 0
  before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "timings.json"}
  capsys.readouterr()
  assert main(["run", str(config), "--output", str(run), "--no-progress"]) == 0
  assert "nothing to do" in capsys.readouterr().out
  assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "timings.json"} == before
  other = config.read_text().replace("keep: 0.3", "keep: 0.4")
  config.write_text(other)
  assert main(["run", str(config), "--output", str(run), "--no-progress"]) == 2  # another config: refused
  half = tmp_path / "half"
  (half / ".resume").mkdir(parents=True)
  (half / "subsets").mkdir()
  assert main(["run", str(config), "--output", str(half), "--no-progress"]) == 0


def test_checkpoints_are_written_by_time_not_every_epoch(digits, tmp_path, monkeypatch):
  """A short subset trained for many epochs once wrote a checkpoint each epoch; a job's
  checkpointer writes at most every PRUNING_CHECKPOINT_SECONDS, and at the end, keeping one."""
  from pruning.training import job_checkpointer

  every_epoch = TrainingCheckpointer(tmp_path / "every")
  train(digits, every_epoch, [])
  assert every_epoch.saves == 5 and every_epoch.latest_epoch() == 5
  monkeypatch.setenv("PRUNING_CHECKPOINT_SECONDS", "3600")
  by_time = job_checkpointer(tmp_path / "by_time")
  first = train(digits, by_time, [])
  assert by_time.saves == 1 and by_time.latest_epoch() == 5  # only the last epoch
  assert [p.name for p in (tmp_path / "by_time").iterdir()] == ["epoch-000005"]
  assert 0 < by_time.bytes_written < every_epoch.bytes_written
  again = train(digits, job_checkpointer(tmp_path / "by_time"), [])  # a finished training is read back
  for a, b in zip(jax.tree.leaves(first.state), jax.tree.leaves(again.state)):
    np.testing.assert_array_equal(a, b)
  monkeypatch.setenv("PRUNING_CHECKPOINT_SECONDS", "soon")
  with pytest.raises(pruning.UserError, match="PRUNING_CHECKPOINT_SECONDS='soon' is not a number"):
    job_checkpointer(tmp_path / "x")


@pytest.mark.slow
def test_tracin_tests_held_out_gradients_survive_a_crash(digits, tmp_path):
  """tracin_test's hook (the held-out split's summed gradient at each TracIn checkpoint) is saved with
  each checkpoint and restored: a run crashed between checkpoints gives the uninterrupted values."""
  from pruning.scores.tracin_scores import TracInReference

  spec = pruning.ProxySpec(
    model="mlp",
    model_options={"hidden": [32]},
    training=TrainConfig(epochs=5, batch_size=64),
    seeds=[0, 1],
    scores=["tracin_test"],
    tracin_checkpoints=3,
  )
  reference = TracInReference(digits, spec)
  train(digits, None, [reference])
  assert sorted(reference.directions) == [2, 3, 5]
  checkpointer = TrainingCheckpointer(tmp_path / "ckpt")
  with pytest.raises(Crash):
    train(digits, checkpointer, [TracInReference(digits, spec), CrashAt(4)])
  resumed = TracInReference(digits, spec)
  train(digits, checkpointer, [resumed, CrashAt(-1)])
  assert sorted(resumed.directions) == [2, 3, 5]
  for epoch, leaves in reference.directions.items():
    for a, b in zip(leaves, resumed.directions[epoch]):
      assert np.array_equal(a, b), epoch
