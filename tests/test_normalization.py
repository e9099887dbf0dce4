"""Input standardisation: per feature for tables, per channel for images, as
the user chooses; checked against scikit-learn's StandardScaler and by what a
model learns from a table whose columns have different scales."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

import pruning
from pruning import UserError
from pruning.data.normalization import Normalizer


def test_per_feature_matches_scikit_learns_standard_scaler():
  rng = np.random.default_rng(0)
  x = np.stack([rng.uniform(20, 70, 500), rng.uniform(1e4, 2e5, 500), np.full(500, 3.0)], axis=1)
  ours = Normalizer.fit(x.astype(np.float32))
  assert ours.mode == "per_feature"
  reference = StandardScaler().fit(x)  # also gives a constant column std 1
  np.testing.assert_allclose(ours(x), reference.transform(x), rtol=1e-4, atol=1e-4)


def test_per_channel_pools_positions_and_global_is_one_scalar():
  rng = np.random.default_rng(1)
  x = (rng.normal(size=(50, 4, 4, 3)) * [1, 10, 100] + [0, 5, -5]).astype(np.float32)
  channel = Normalizer.fit(x)
  assert channel.mode == "per_channel" and channel.mean.shape == (3,)
  np.testing.assert_allclose(channel.mean, x.reshape(-1, 3).mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(channel.std, x.reshape(-1, 3).std(0), rtol=1e-4)
  single = Normalizer.fit(x, mode="global")
  np.testing.assert_allclose(single.mean, x.mean(), rtol=1e-4, atol=1e-4)
  feature = Normalizer.fit(x, mode="per_feature")
  assert feature.mean.shape == (4, 4, 3)
  none = Normalizer.fit(x, mode="none")
  assert np.array_equal(none(x), x)
  again = Normalizer.from_description(feature.describe())
  assert np.array_equal(again(x), feature(x))


def mixed_scale_table(path, n=600, seed=0):
  """An age (20-70) and an income (1e4-2e5); the label depends on age only."""
  rng = np.random.default_rng(seed)
  age, income = rng.uniform(20, 70, n), rng.uniform(1e4, 2e5, n)
  label = (age > 45).astype(int)
  split = np.where(np.arange(n) < n * 0.8, "train", "test")
  pd.DataFrame({"age": age, "income": income, "label": label, "split": split}).to_parquet(path)
  return f"parquet:{path}"


@pytest.mark.slow
def test_a_table_with_columns_of_different_scales_is_learned(tmp_path):
  spec = mixed_scale_table(tmp_path / "people.parquet")
  accuracy = {}
  for mode in ("auto", "global"):
    dataset = pruning.load_dataset(spec, normalize=mode)
    result = pruning.retrain(
      dataset,
      None,
      spec=pruning.ModelSpec(model="mlp", training=pruning.TrainConfig(epochs=20, batch_size=64), seeds=[0]),
      progress=False,
    )
    accuracy[mode] = result.summary()["accuracy"]
  assert accuracy["auto"] > 0.85, accuracy  # per column: the age is visible
  assert accuracy["global"] < 0.7, accuracy  # one scalar: the income drowns it


def test_the_choice_is_recorded_and_bad_modes_are_refused(tmp_path):
  spec = mixed_scale_table(tmp_path / "people.parquet", n=100)
  dataset = pruning.load_dataset(spec, normalize="none")
  manifest = pruning.score_dataset(
    dataset, model="linear", training=pruning.TrainConfig(epochs=1), seeds=[0], progress=False
  )
  assert manifest.provenance["normalization"]["mode"] == "none"
  with pytest.raises(UserError, match="did you mean 'per_feature'"):
    pruning.load_dataset(spec, normalize="per_featur")
  with pytest.raises(UserError, match="normalize"):
    pruning.parse_config({"name": "x", "dataset": {"spec": spec, "normalize": "zscore"}})
