"""Resumable jobs: training resumed from a checkpoint equals uninterrupted training
bit for bit, and real runs killed with SIGKILL at random moments resume with the
same command to the same outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import pruning
from pruning.checkpointing import TrainingCheckpointer
from pruning.scores.vog import VoGAccumulator
from pruning.training import TrainConfig, train_models


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
  return train_models(digits.train.x, digits.train.y, model="mlp", model_options={"hidden": [32]}, num_classes=10,
                      seeds=[0, 1], config=TrainConfig(epochs=5, batch_size=64), checkpoint_epochs=[0, 2],
                      epoch_hooks=hooks, checkpointer=checkpointer, progress=False)


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


def test_a_checkpoint_of_another_run_is_refused(digits, tmp_path):
  checkpointer = TrainingCheckpointer(tmp_path / "ckpt")
  with pytest.raises(Crash):
    train(digits, checkpointer, [CrashAt(3)])
  with pytest.raises(pruning.UserError, match="another training run"):
    train_models(digits.train.x, digits.train.y, model="mlp", model_options={"hidden": [32]}, num_classes=10,
                 seeds=[0, 2], config=TrainConfig(epochs=5, batch_size=64), checkpointer=checkpointer,
                 epoch_hooks=[CrashAt(-1)], checkpoint_epochs=[0, 2], progress=False)
