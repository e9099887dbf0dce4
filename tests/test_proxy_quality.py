"""Useless proxies, said: each proxy's held-out accuracy is recorded with the
majority-class rate, printed, and a warning names proxies near that rate
(their scores and flags rank noise)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pruning
from pruning.evaluation import proxy_accuracy
from pruning.training import TrainConfig


def test_the_record_matches_a_count_by_hand():
  predictions = np.array([[0, 1, 1, 2], [0, 0, 0, 0]])
  y = np.array([0, 1, 2, 0])
  record = proxy_accuracy(predictions, y, split="test")
  assert record["accuracy_per_seed"] == [0.5, 0.5] and record["accuracy"] == 0.5
  assert record["majority_rate"] == 0.5 and record["weak"]  # 0.5 < 0.5 + 0.25 * 0.5
  assert not proxy_accuracy(np.array([[0, 1, 2, 0]]), y, split="test")["weak"]


def test_weak_proxies_warn_and_trained_ones_do_not(digits):
  held_out = digits.test
  with pytest.warns(UserWarning, match="(barely above|below) always predicting the largest class, so the scores"):
    weak = pruning.score_dataset(
      digits, model="linear", training=TrainConfig(epochs=1, learning_rate=1e-5), seeds=[0, 1], progress=False
    )
  record = weak.provenance["proxy_accuracy"]
  assert record["split"] == "test" and record["num_examples"] == len(held_out) and record["weak"]
  majority = np.bincount(held_out.y).max() / len(held_out)
  assert record["majority_rate"] == pytest.approx(majority)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    strong = pruning.score_dataset(digits, model="linear", training=TrainConfig(epochs=5), seeds=[0], progress=False)
  assert strong.provenance["proxy_accuracy"]["accuracy"] > 0.5 and not strong.provenance["proxy_accuracy"]["weak"]


def test_flagging_records_out_of_fold_accuracy_and_warns_when_weak(tmp_path, capsys):
  from pruning.cli import main

  weak = ["--model", "linear", "--epochs", "1", "--learning-rate", "1e-5", "--seeds", "1", "--no-progress"]
  with pytest.warns(UserWarning):
    assert main(["score", "--data", "digits", *weak, "--out", str(tmp_path / "m.parquet")]) == 0
  assert "proxies' accuracy on test: " in capsys.readouterr().err
  with pytest.warns(UserWarning, match="so the flags rank noise"):
    assert main(["flag", str(tmp_path / "m.parquet"), "--folds", "2", "--out", str(tmp_path / "f.parquet")]) == 0
  out = capsys.readouterr().out
  assert "the test split was not examined" in out and "proxies' accuracy on held-out folds: " in out
  record = pruning.Manifest.read_parquet(tmp_path / "f.parquet").provenance["flagging"]["out_of_fold_accuracy"]
  assert record["num_examples"] == 1437 and record["weak"]
