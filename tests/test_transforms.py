"""Study transforms: long-tail profiles, symmetric label noise, validation splits,
and how they reach the manifest."""

from __future__ import annotations

import numpy as np
import pytest

import pruning
from pruning import UserError
from pruning.data.transforms import label_noise, long_tail, long_tail_counts
from pruning.training import TrainConfig, train_models


def test_long_tail_follows_the_exponential_profile():
  digits = pruning.load_dataset("digits")
  tail = long_tail(digits, ratio=10.0, seed=0)
  counts = np.bincount(tail.train.y, minlength=10)
  n_max = np.bincount(digits.train.y).max()
  expected = np.minimum(np.bincount(digits.train.y), np.floor(n_max * 10.0 ** (-np.arange(10) / 9) + 1e-9)).astype(int)
  assert counts.tolist() == expected.tolist()
  assert counts[0] / counts[-1] == pytest.approx(10, rel=0.1)
  # Every kept example is an original one, with its own label; the test split is untouched.
  original = dict(zip(digits.train.ids, digits.train.y))
  assert all(original[i] == y for i, y in zip(tail.train.ids, tail.train.y))
  assert tail.test is digits.test
  assert tail.transforms[-1]["transform"] == "long_tail"
  assert long_tail_counts(np.array([500, 500, 500]), 100).tolist() == [500, 50, 5]
  with pytest.raises(UserError, match="ratio"):
    long_tail(digits, ratio=0.5)


def test_symmetric_label_noise_flips_exactly_eta_to_other_classes():
  digits = pruning.load_dataset("digits")
  noisy = label_noise(digits, rate=0.1, seed=3)
  flipped = noisy.train.is_noisy
  assert flipped.sum() == round(0.1 * len(digits.train))
  assert np.array_equal(noisy.train.clean_y, digits.train.y)
  assert np.all(noisy.train.y[flipped] != digits.train.y[flipped])
  assert np.array_equal(noisy.train.y[~flipped], digits.train.y[~flipped])
  # Uniform over the other classes: every offset 1..9 occurs.
  offsets = (noisy.train.y[flipped] - digits.train.y[flipped]) % 10
  assert set(offsets.tolist()) == set(range(1, 10))
  assert noisy.fingerprint != digits.fingerprint
  again = label_noise(digits, rate=0.1, seed=3)
  assert np.array_equal(again.train.y, noisy.train.y)
  with pytest.raises(UserError, match="rate"):
    label_noise(digits, rate=1.5)


def test_load_dataset_applies_holdouts_then_transforms(tmp_path):
  digits = pruning.load_dataset("digits")
  np.savez(tmp_path / "d.npz", x=digits.train.x, y=digits.train.y)
  data = pruning.load_dataset(
    f"npz:{tmp_path / 'd.npz'}", holdout=0.2, validation=0.1, long_tail=20, label_noise=0.1, seed=1
  )
  assert [t["transform"] for t in data.transforms] == [
    "hold_out_test",
    "hold_out_validation",
    "long_tail",
    "label_noise",
  ]
  # The validation split stays balanced and clean.
  assert data.validation.clean_y is None and np.bincount(data.validation.y).min() >= 10
  ids = set(data.train.ids) | set(data.validation.ids) | set(data.test.ids)
  assert len(ids) == len(data.train) + len(data.validation) + len(data.test)
  with pytest.raises(UserError, match="validation"):
    pruning.load_dataset("digits", validation=1.5)


def test_noise_and_validation_reach_the_manifest():
  data = pruning.load_dataset("digits", validation=0.2, label_noise=0.1)
  manifest = pruning.score_dataset(
    data,
    model="linear",
    training=TrainConfig(epochs=3, batch_size=64, learning_rate=0.01),
    seeds=(0, 1),
    scores=["el2n"],
    progress=False,
  )
  table = manifest.table
  assert table["is_noisy"].sum() == round(0.1 * len(data.train))
  assert np.array_equal(table["clean_label"], data.train.clean_y)
  validation = manifest.provenance["validation"]
  assert validation["num_examples"] == len(data.validation)
  # Recall against the same proxies retrained and counted by hand.
  models = train_models(
    pruning.TrainData(x=data.train.x, y=data.train.y, num_classes=10),
    pruning.ModelSpec(model="linear", seeds=(0, 1), training=TrainConfig(epochs=3, batch_size=64, learning_rate=0.01)),
    progress=False,
  )
  predictions = models.predict(data.validation.x)
  recall = np.array(validation["per_class_recall"])
  for label in range(10):
    members = data.validation.y == label
    assert recall[label] == pytest.approx(np.mean(predictions[:, members] == label), abs=1e-12)
  assert recall.mean() > 0.5
  assert manifest.provenance["dataset"]["transforms"][-1]["transform"] == "label_noise"
  subset = pruning.select(manifest, keep=0.3, strategy="hardest", class_rule="drop", score="el2n")
  errors = 1 - recall
  kept = np.array(subset.selection["kept_per_class"])
  # Classes with more validation error keep more (up to rounding and caps).
  hardest_class, easiest_class = int(np.argmax(errors)), int(np.argmin(errors))
  assert kept[hardest_class] >= kept[easiest_class]
