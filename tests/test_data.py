"""Dataset sources: digits, mnist1d, npz, parquet, tfds (mock data), and their errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import small_images, write_npz

import pruning
from pruning import UserError


def test_digits_split_is_fixed_stratified_and_stable(digits):
  assert digits.train.x.shape == (1437, 8, 8, 1) and len(digits.test) == 360
  assert set(digits.train.ids).isdisjoint(digits.test.ids)
  again = pruning.load_dataset("digits")
  assert again.fingerprint == digits.fingerprint
  assert list(again.train.ids[:3]) == list(digits.train.ids[:3])
  counts = np.bincount(digits.test.y)
  assert counts.min() >= 35 and counts.max() <= 37  # stratified 20%


def test_mnist1d_is_generated_offline():
  state = np.random.get_state()[1].copy()
  data = pruning.load_dataset("mnist1d")
  assert data.train.x.shape == (4000, 40) and data.test.x.shape == (1000, 40)
  assert data.num_classes == 10 and data.train.ids[0] == "mnist1d-train-0"
  assert np.array_equal(np.random.get_state()[1], state), "global NumPy state must be restored"


def test_npz_round_trip_with_ids_and_test(tmp_path):
  x, y = small_images()
  path = write_npz(
    tmp_path / "d.npz", x=x, y=y, id=np.array([f"e{i}" for i in range(len(y))]), x_test=x[:9], y_test=y[:9]
  )
  data = pruning.load_dataset(f"npz:{path}")
  assert data.train.ids[5] == "e5" and len(data.test) == 9 and data.num_classes == 3
  np.testing.assert_array_equal(data.train.x, x)


@pytest.mark.parametrize(
  "arrays,message",
  [
    (dict(y=np.arange(4)), "no array 'x'"),
    (dict(x=np.ones((4, 2))), "no array 'y'"),
    (dict(x=np.ones((4, 2)), y=np.array([0, 1, -1, 0])), "negative label"),
    (dict(x=np.ones((4, 2)), y=np.array([0, 1.5, 1, 0])), "whole numbers"),
    (dict(x=np.ones((4, 2)), y=np.zeros(4, int)), "single class"),
    (dict(x=np.ones((4, 2)), y=np.array([0, 1, 0])), "4 feature rows but 3 labels"),
    (dict(x=np.array([[1.0], [np.nan], [0], [1]]), y=np.array([0, 1, 0, 1])), "NaN"),
    (dict(x=np.ones((4, 2)), y=np.array([0, 1, 0, 1]), id=np.array(["a", "a", "b", "c"])), "not unique"),
    (dict(x=np.ones((4, 2)), y=np.array([0, 1, 0, 1]), x_test=np.ones((2, 2))), "only one of x_test"),
    (dict(x=np.ones((4, 3, 8, 8)), y=np.array([0, 1, 0, 1])), "channels-first"),
  ],
)
def test_npz_bad_input(tmp_path, arrays, message):
  path = write_npz(tmp_path / "bad.npz", **arrays)
  with pytest.raises(UserError, match=message):
    pruning.load_dataset(f"npz:{path}")


def test_npz_with_pickled_objects_is_refused(tmp_path):
  path = tmp_path / "pickled.npz"
  objects = np.empty(4, dtype=object)
  objects[:] = [{"a": 1}, None, 2, "x"]
  np.savez(path, x=np.ones((4, 2)), y=objects)
  with pytest.raises(UserError, match="unpickling"):
    pruning.load_dataset(f"npz:{path}")


def test_missing_files_and_unknown_specs(tmp_path):
  with pytest.raises(UserError, match="no such file"):
    pruning.load_dataset(f"npz:{tmp_path / 'nope.npz'}")
  with pytest.raises(UserError, match="did you mean 'digits'"):
    pruning.load_dataset("digitz")
  not_npz = tmp_path / "text.npz"
  not_npz.write_text("hello")
  with pytest.raises(UserError, match="not a readable .npz"):
    pruning.load_dataset(f"npz:{not_npz}")


def test_parquet_source(tmp_path):
  frame = pd.DataFrame(
    {
      "a": [0.0, 1, 2, 3, 4, 5],
      "b": [1.0, 0, 1, 0, 1, 0],
      "target": ["cat", "dog", "cat", "dog", "cat", "dog"],
      "example_id": [f"r{i}" for i in range(6)],
      "split": ["train"] * 4 + ["test"] * 2,
    }
  )
  path = tmp_path / "t.parquet"
  frame.to_parquet(path)
  with pytest.raises(UserError, match="--label-column"):
    pruning.load_dataset(f"parquet:{path}")
  data = pruning.load_dataset(f"parquet:{path}", label_column="target")
  assert data.class_names == ("cat", "dog")
  assert list(data.train.y) == [0, 1, 0, 1] and list(data.test.ids) == ["r4", "r5"]
  assert data.train.x.shape == (4, 2)
  frame.assign(a=["x"] * 6).to_parquet(path)
  with pytest.raises(UserError, match="not numeric"):
    pruning.load_dataset(f"parquet:{path}", label_column="target")


def test_tfds_mock_data_source():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=24):
    data = pruning.load_dataset("tfds:mnist:train")
  assert data.train.x.shape == (24, 28, 28, 1)
  assert data.num_classes == 10 and data.test is not None
  assert len(set(data.train.ids)) == 24
  assert all("__" in i for i in data.train.ids)
  with pytest.raises(UserError, match="tfds:NAME"):
    pruning.load_dataset("tfds:mnist")


def test_tfds_ids_follow_add_tfds_id_format():
  """With real shard files, ids are `<shard file>__<index in shard>`."""
  from types import SimpleNamespace
  from unittest import mock

  from tensorflow_datasets.core.utils.shard_utils import FileInstruction

  from pruning.data import tfds as tfds_source

  instructions = [
    FileInstruction("/d/mnist-train.array_record-00000-of-00002", 5, 3, 10),
    FileInstruction("/d/mnist-train.array_record-00001-of-00002", 0, 2, 10),
  ]
  source = SimpleNamespace(dataset_info=None, split="train", __len__=lambda: 5)
  source = mock.MagicMock()
  source.__len__.return_value = 5
  with mock.patch("tensorflow_datasets.core.data_sources.base.file_instructions", return_value=instructions):
    ids = tfds_source._tfds_ids(source, "mnist", "train")
  assert ids == [
    "mnist-train.array_record-00000-of-00002__5",
    "mnist-train.array_record-00000-of-00002__6",
    "mnist-train.array_record-00000-of-00002__7",
    "mnist-train.array_record-00001-of-00002__0",
    "mnist-train.array_record-00001-of-00002__1",
  ]


def test_holdout_makes_a_seeded_stratified_test_split(tmp_path):
  x, y = small_images(n=90)
  path = write_npz(tmp_path / "d.npz", x=x, y=y.reshape(-1, 1).astype(np.uint8))  # (N, 1) labels
  data = pruning.load_dataset(f"npz:{path}", holdout=0.2)
  assert len(data.train) == 72 and len(data.test) == 18
  assert np.bincount(data.test.y).tolist() == [6, 6, 6]
  assert set(data.train.ids).isdisjoint(data.test.ids)
  assert pruning.load_dataset(f"npz:{path}", holdout=0.2).fingerprint == data.fingerprint
  with pytest.raises(UserError, match="already has a test split"):
    pruning.load_dataset("digits", holdout=0.2)
  with pytest.raises(UserError, match=r"\(0, 1\)"):
    pruning.load_dataset(f"npz:{path}", holdout=1.5)


def test_labels_that_skip_classes_are_refused(tmp_path):
  """Labels {0, 1, 2, 5} once sized the model by the largest label, with classes 3 and 4 never seen."""
  from conftest import small_images, write_npz

  x, _ = small_images(n=40, num_classes=4, shape=(3,))
  y = np.array([0, 1, 2, 5] * 10)
  path = write_npz(tmp_path / "gaps.npz", x=x, y=y)
  with pytest.raises(pruning.UserError, match="no training example has label 3, 4"):
    pruning.load_dataset(f"npz:{path}")
