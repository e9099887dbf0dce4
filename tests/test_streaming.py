"""Data streamed from disk: memory-mapped features give the manifest that the
same data in memory gives; chunked passes equal whole-array computations."""

from __future__ import annotations

import os

import numpy as np
import pytest

import pruning
from pruning.data import streaming
from pruning.data.normalization import Normalizer
from pruning.scores import compute_scores
from pruning.training import TrainConfig, train_models

SCORES = ["el2n", "margin", "grand", "grand_last_layer", "vog", "forgetting", "aum", "el2n@1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("stream")
  digits = pruning.load_dataset("digits")
  arrays = {"x": digits.train.x, "y": digits.train.y, "x_test": digits.test.x, "y_test": digits.test.y}
  with open(folder / "stored.npz", "wb") as handle:
    np.savez(handle, **arrays)
  with open(folder / "compressed.npz", "wb") as handle:
    np.savez_compressed(handle, **arrays)
  return folder


def test_uncompressed_npz_features_are_memory_mapped(files):
  stored = pruning.load_dataset(f"npz:{files / 'stored.npz'}")
  compressed = pruning.load_dataset(f"npz:{files / 'compressed.npz'}")
  assert streaming.is_mapped(stored.train.x) and not streaming.is_mapped(compressed.train.x)
  assert not streaming.is_mapped(stored.test.x)  # only the training features are mapped
  np.testing.assert_array_equal(np.asarray(stored.train.x), compressed.train.x)
  assert stored.fingerprint == compressed.fingerprint
  assert streaming.map_npz_member(files / "compressed.npz", "x") is None
  assert streaming.map_npz_member(files / "stored.npz", "missing") is None


@pytest.mark.slow
def test_streamed_data_gives_the_in_memory_manifest(files):
  def manifest(name):
    dataset = pruning.load_dataset(f"npz:{files / name}")
    return pruning.score_dataset(
      dataset, model="mlp", training=TrainConfig(epochs=2, batch_size=128), seeds=[0, 1], scores=SCORES, progress=False
    )

  streamed, in_memory = manifest("stored.npz"), manifest("compressed.npz")
  assert streamed.table["example_id"].tolist() == in_memory.table["example_id"].tolist()
  for column in in_memory.table.columns:
    if in_memory.table[column].dtype.kind == "f":
      np.testing.assert_allclose(streamed.table[column], in_memory.table[column], rtol=1e-5, atol=1e-6, err_msg=column)
    else:
      assert streamed.table[column].equals(in_memory.table[column]), column


def test_scoring_in_blocks_equals_scoring_at_once(monkeypatch):
  digits = pruning.load_dataset("digits")
  models = train_models(
    pruning.TrainData(x=digits.train.x, y=digits.train.y, num_classes=10),
    pruning.ModelSpec(model="mlp", seeds=[0, 1], training=TrainConfig(epochs=2, batch_size=128)),
    checkpoint_epochs=[1],
    progress=False,
  )
  requests = [s for s in SCORES if s != "vog"]
  whole = compute_scores(models, digits.train.x, digits.train.y, requests, progress=False)
  # Blocks of 1024 rows (the forward batch): digits' 1437 rows take two.
  monkeypatch.setattr(pruning.scores, "BLOCK_BYTES", 1)
  assert pruning.scores.block_rows(2, 10) == 1024
  blocked = compute_scores(models, digits.train.x, digits.train.y, requests, progress=False)
  for column, values in whole.items():
    np.testing.assert_array_equal(blocked[column], values, err_msg=column)


def test_chunked_statistics_match_numpy(monkeypatch):
  monkeypatch.setattr(streaming, "CHUNK_BYTES", 1000)
  rng = np.random.default_rng(0)
  flat = (rng.normal(size=(500, 7)) * 3 + 2).astype(np.float32)
  images = rng.uniform(size=(60, 5, 5, 3)).astype(np.float32)
  fitted = Normalizer.fit(flat)  # a table: per column
  np.testing.assert_allclose(fitted.mean, flat.astype(np.float64).mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(fitted.std, flat.astype(np.float64).std(axis=0), rtol=1e-6)
  single = Normalizer.fit(flat, mode="global")
  np.testing.assert_allclose(single.mean, flat.astype(np.float64).mean(), rtol=1e-6)
  np.testing.assert_allclose(single.std, flat.astype(np.float64).std(), rtol=1e-6)
  per_channel = Normalizer.fit(images)
  np.testing.assert_allclose(per_channel.mean, images.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-6)
  np.testing.assert_allclose(per_channel.std, images.astype(np.float64).std(axis=(0, 1, 2)), rtol=1e-6)
  rows = np.array([400, 3, 17, 250])
  np.testing.assert_allclose(
    Normalizer.fit(flat, rows=rows).mean, flat[rows].astype(np.float64).mean(axis=0), rtol=1e-6
  )
  import hashlib

  chunked, whole = hashlib.sha256(), hashlib.sha256()
  streaming.hash_rows(chunked, flat)
  whole.update(flat.tobytes())
  assert chunked.hexdigest() == whole.hexdigest()
  flat[123, 4] = np.nan
  assert not streaming.all_finite(flat)


def test_mapped_features_with_nan_are_refused(tmp_path):
  x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
  x[7, 2] = np.inf
  with open(tmp_path / "bad.npz", "wb") as handle:
    np.savez(handle, x=x, y=np.arange(50) % 2)
  with pytest.raises(pruning.UserError, match="NaN or infinite"):
    pruning.load_dataset(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.slow
def test_streamed_manifest_file_equals_the_in_memory_one(files, tmp_path, monkeypatch):
  """Scoring straight to Parquet a row group at a time writes the bytes that
  building the whole manifest and saving it writes."""
  import pyarrow.parquet as pq

  from pruning.scores.run import ProxySpec, score_proxies, train_proxies, write_scores

  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
  monkeypatch.setattr(pruning.manifest, "ROW_GROUP_ROWS", 500)
  monkeypatch.setattr(pruning.scores.run, "ROW_GROUP_ROWS", 500)
  dataset = pruning.load_dataset(f"npz:{files / 'stored.npz'}", validation=0.1)
  config = TrainConfig(epochs=2, batch_size=128)
  spec = ProxySpec(model="mlp", training=config, seeds=[0, 1], scores=SCORES)
  models = train_proxies(dataset, spec, progress=False)
  for shard in (None, (1, 2)):
    streamed, whole = tmp_path / f"streamed-{shard}.parquet", tmp_path / f"whole-{shard}.parquet"
    rows = write_scores(models, dataset, spec, streamed, shard=shard, progress=False)
    manifest = score_proxies(models, dataset, spec, shard=shard, progress=False)
    manifest.to_parquet(whole)
    assert rows == len(manifest)
    assert pq.ParquetFile(streamed).num_row_groups == -(-len(manifest) // 500)
    assert streamed.read_bytes() == whole.read_bytes()


def test_take_rows_reads_the_rows_a_mapping_holds(files):
  x = streaming.map_npz_member(files / "stored.npz", "x")
  positions = np.array([5, 0, 1436, 5, 700])
  np.testing.assert_array_equal(streaming.take_rows(x, positions), np.asarray(x)[positions])
  view = x[100:200]  # a view of the mapping: read through it
  np.testing.assert_array_equal(streaming.take_rows(view, np.array([0, 99])), np.asarray(x)[[100, 199]])
  in_memory = np.asarray(x).copy()
  np.testing.assert_array_equal(streaming.take_rows(in_memory, positions), in_memory[positions])
  with pytest.raises(IndexError):
    streaming.take_rows(x, np.array([len(x)]))


def _same_data(streamed, in_memory):
  assert streaming.is_mapped(streamed.train.x) and not streaming.is_mapped(in_memory.train.x)
  np.testing.assert_array_equal(np.asarray(streamed.train.x), in_memory.train.x)
  np.testing.assert_array_equal(streamed.train.y, in_memory.train.y)
  assert list(streamed.train.ids) == list(in_memory.train.ids)
  assert streamed.fingerprint == in_memory.fingerprint


@pytest.mark.slow
def test_parquet_streams_a_row_group_at_a_time(tmp_path, monkeypatch):
  import pandas as pd

  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "cache"))  # a folder of this test's own
  digits = pruning.load_dataset("digits")
  frame = pd.DataFrame(digits.train.x.reshape(len(digits.train), -1), columns=[f"p{i}" for i in range(64)])
  frame["label"] = [f"class-{c}" for c in digits.train.y]  # string labels get class names
  frame["example_id"] = [f"ex{i}" for i in range(len(frame))]
  frame["split"] = np.where(np.arange(len(frame)) % 5 == 0, "test", "train")
  path = tmp_path / "digits.parquet"
  frame.to_parquet(path, row_group_size=300)  # five row groups
  streamed = pruning.load_dataset(f"parquet:{path}", stream=True)
  in_memory = pruning.load_dataset(f"parquet:{path}")
  _same_data(streamed, in_memory)
  np.testing.assert_array_equal(streamed.test.x, in_memory.test.x)
  assert streamed.class_names == in_memory.class_names
  # The spill file never has a name: nothing is left behind.
  assert not list((tmp_path / "cache").iterdir())
  rows = streaming.take_rows(streamed.train.x, np.array([3, 1, 2]))
  np.testing.assert_array_equal(rows, in_memory.train.x[[3, 1, 2]])
  manifests = [
    pruning.score_dataset(d, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False)
    for d in (streamed, in_memory)
  ]
  np.testing.assert_allclose(manifests[0].table["el2n"], manifests[1].table["el2n"], rtol=1e-5, atol=1e-6)
  with pytest.raises(pruning.UserError, match="no label column"):
    pruning.load_dataset(f"parquet:{path}", label_column="nope", stream=True)


def test_tfds_data_source_streams(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=24):
    streamed = pruning.load_dataset("tfds:mnist:train", stream=True)
    in_memory = pruning.load_dataset("tfds:mnist:train")
  _same_data(streamed, in_memory)
  assert streamed.train.x.shape == (24, 28, 28, 1)


def test_row_number_ids_read_like_the_array_they_stand_for():
  from pruning.data.dataset import RowNumberIds

  ids, array = RowNumberIds(1200), np.arange(1200).astype(str)
  assert len(ids) == 1200 and ids.shape == (1200,) and ids.dtype == np.dtype("U4")
  assert ids[7] == "7" and ids[-1] == "1199" and ids[np.int64(3)] == "3"
  for key in (slice(5, 20, 3), slice(None, None, -1), np.array([4, 0, 1199, -2]), np.arange(1200) % 7 == 0):
    np.testing.assert_array_equal(ids[key], array[key])
  assert list(ids) == ids.tolist() == array.tolist()
  np.testing.assert_array_equal(np.asarray(ids), array)
  np.testing.assert_array_equal(ids.astype(str), array)
  for bad in (1200, -1201, np.array([1200]), np.array([True, False])):
    with pytest.raises(IndexError):
      ids[bad]


def test_a_replaced_file_does_not_mix_with_the_mapped_one(tmp_path):
  path = tmp_path / "data.npz"
  first = np.arange(40, dtype=np.float32).reshape(20, 2)
  with open(path, "wb") as handle:
    np.savez(handle, x=first, y=np.arange(20) % 2)
  mapped = streaming.map_npz_member(path, "x")
  replacement = tmp_path / "new.npz"
  with open(replacement, "wb") as handle:
    np.savez(handle, x=-first, y=np.arange(20) % 2)
  replacement.replace(path)  # a new file at the same path
  np.testing.assert_array_equal(streaming.take_rows(mapped, np.array([3, 0])), first[[3, 0]])


def test_an_unwritable_cache_folder_is_named(tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(blocker / "cache"))
  with pytest.raises(pruning.UserError, match="PRUNING_CACHE_DIR"):
    streaming.SpillFile()


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_streamed_read_stopped_by_a_signal_leaves_no_spill_file(tmp_path, signal_name):
  """What Slurm preemption and `scancel` send, Ctrl-C, and a hard kill, all mid-read."""
  import signal
  import subprocess
  import sys
  import time

  import pandas as pd

  rng = np.random.default_rng(0)
  frame = pd.DataFrame(rng.normal(size=(200_000, 32)).astype(np.float32), columns=[f"f{i}" for i in range(32)])
  frame["label"] = np.arange(len(frame)) % 2
  path = tmp_path / "big.parquet"
  frame.to_parquet(path, row_group_size=2_000)
  cache = tmp_path / "cache"
  cache.mkdir()
  script = (
    "import sys, pruning\n"
    "from pruning.data import streaming\n"
    "original = streaming.SpillFile.append\n"
    "def slow(self, chunk):\n"
    "  original(self, chunk); print('wrote', flush=True); __import__('time').sleep(0.05)\n"
    "streaming.SpillFile.append = slow\n"
    f"pruning.load_dataset('parquet:{path}', stream=True)\n"
  )
  job = subprocess.Popen(
    [sys.executable, "-c", script],
    stdout=subprocess.PIPE,
    text=True,
    env={**os.environ, "PRUNING_CACHE_DIR": str(cache)},
  )
  for _ in range(3):
    assert job.stdout.readline().strip() == "wrote"
  job.send_signal(getattr(signal, signal_name))
  job.wait(timeout=60)
  time.sleep(0.1)
  assert job.returncode != 0
  assert not list(cache.iterdir())
