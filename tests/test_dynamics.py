"""Training dynamics against hand-worked sequences and against the models' own logits."""

from __future__ import annotations

import numpy as np
import pytest

import pruning
from pruning.training import TrainConfig
from pruning.training.recorder import DynamicsRecorder


def feed(recorder, per_epoch):
  """per_epoch: list of dicts of (N,) arrays for one seed, every example visited once."""
  for stats in per_epoch:
    n = len(stats["correct"])
    order = np.arange(n)[::-1]  # visit in a different order than the rows
    recorder.record_epoch(
      order[None], np.ones((1, n)), {k: np.asarray(v, np.float64)[order][None] for k, v in stats.items()}
    )


def test_forgetting_aum_and_uncertainty_by_hand():
  # Three examples over five epochs.
  correct = [[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 0]]
  # Example 0: 1 0 1 0 1 -> forgotten twice; example 1 never learned -> 5 visits;
  # example 2: 1 1 1 1 0 -> forgotten once.
  margin = [[2.0, -1, 3], [-1, -2, 3], [1, -1, 3], [-2, -3, 3], [3, -1, -1]]
  p_true = [[0.9, 0.1, 0.8], [0.3, 0.1, 0.8], [0.7, 0.2, 0.8], [0.2, 0.1, 0.8], [0.8, 0.1, 0.4]]
  epochs = [
    {"correct": np.array(c), "margin": np.array(m), "p_true": np.array(p), "loss": -np.log(np.array(p))}
    for c, m, p in zip(correct, margin, p_true)
  ]
  recorder = DynamicsRecorder(1, 3, window=3)
  feed(recorder, epochs)
  scores = recorder.scores()
  assert scores["forgetting"][0].tolist() == [2, 5, 1]
  np.testing.assert_allclose(scores["aum"][0], [0.6, -1.6, 2.2], rtol=1e-6)
  p = np.array(p_true)
  windows = [p[k : k + 3].std(axis=0) for k in range(3)]
  np.testing.assert_allclose(scores["dynamic_uncertainty"][0], np.mean(windows, axis=0), rtol=1e-5)
  np.testing.assert_allclose(scores["mean_loss"][0], (-np.log(p)).mean(axis=0), rtol=1e-5)


def test_short_runs_use_one_window():
  recorder = DynamicsRecorder(1, 2, window=10)
  feed(
    recorder,
    [
      {"correct": np.array([1, 1]), "margin": np.zeros(2), "p_true": np.array(q), "loss": np.zeros(2)}
      for q in ([0.2, 0.5], [0.6, 0.5])
    ],
  )
  np.testing.assert_allclose(recorder.scores()["dynamic_uncertainty"][0], [0.2, 0.0], atol=1e-7)


def test_recorded_margins_are_the_logits_the_step_saw(digits):
  """One full-batch step: the recorded margin is the initial model's logit margin."""
  x, y = digits.train.x[:64], digits.train.y[:64]
  models = pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(
      model="mlp", options={"hidden": [16]}, seeds=[0, 1], training=TrainConfig(epochs=1, batch_size=64)
    ),
    checkpoint_epochs=[0],
    progress=False,
  )
  logits = models.logits(x, epoch=0).astype(np.float64)
  true = logits[:, np.arange(64), y]
  masked = logits.copy()
  masked[:, np.arange(64), y] = -np.inf
  np.testing.assert_allclose(models.dynamics["aum"], true - masked.max(-1), rtol=1e-4, atol=1e-5)
  expected_correct = logits.argmax(-1) == y
  assert np.array_equal(models.dynamics["forgetting"] == 1, ~expected_correct)  # never learned: 1 visit


def test_dynamics_scores_reach_the_manifest(linear_manifest, digits):
  manifest = pruning.score_dataset(
    digits,
    model="linear",
    training=TrainConfig(epochs=2, batch_size=256),
    seeds=[0, 1],
    scores=["aum", "forgetting", "dynamic_uncertainty", "mean_loss"],
    progress=False,
  )
  assert manifest.scores["aum"]["harder"] == "lower" and manifest.scores["aum"]["during_training"]
  assert manifest.table["forgetting"].between(0, 2).all()
  with pytest.raises(pruning.UserError, match="takes no @EPOCH"):
    pruning.ScoreRequest.parse("aum@1")


def test_the_uncertainty_window_is_an_option_recorded_with_a_warning_when_it_collapses(digits, tmp_path, capsys):
  import warnings

  from pruning.cli import main

  config = pruning.TrainConfig(epochs=3, batch_size=256)
  with pytest.warns(UserWarning, match="fewer than its window of 10"):
    default = pruning.score_dataset(
      digits, model="linear", training=config, seeds=[0], scores=["dynamic_uncertainty"], progress=False
    )
  assert (default.scores["dynamic_uncertainty"]["window"], default.scores["dynamic_uncertainty"]["window_used"]) == (
    10,
    3,
  )
  with warnings.catch_warnings():
    warnings.filterwarnings("error", message=".*window.*")  # (these few steps leave the proxies weak: said apart)
    short = pruning.score_dataset(
      digits,
      model="linear",
      training=config,
      seeds=[0],
      scores=["dynamic_uncertainty"],
      dynamics_window=2,
      progress=False,
    )
  assert short.scores["dynamic_uncertainty"]["window"] == 2
  assert not np.allclose(short.table["dynamic_uncertainty"], default.table["dynamic_uncertainty"])
  assert (
    main(
      [
        "score",
        "--data",
        "digits",
        "--model",
        "linear",
        "--epochs",
        "3",
        "--seeds",
        "1",
        "--no-progress",
        "--score",
        "dynamic_uncertainty",
        "--dynamics-window",
        "2",
        "--out",
        str(tmp_path / "m.parquet"),
      ]
    )
    == 0
  )
  assert pruning.Manifest.read_parquet(tmp_path / "m.parquet").scores["dynamic_uncertainty"]["window"] == 2
