"""Export: TFDS datasets that load back with the same ids and features, image
folders, rebalancing, and refusal of unsafe names."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import small_images, write_npz

import pruning
from pruning import UserError
from pruning.cli import main
from pruning.export import export_subset, rebalanced_rows
from pruning.training import TrainConfig


@pytest.fixture(scope="module")
def tfds_digits(tmp_path_factory, digits):
  """digits as a prepared TFDS dataset, built locally by the exporter's TFDS builder."""
  root = tmp_path_factory.mktemp("tfds")
  everything = pruning.select(
    pruning.score_dataset(digits, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False),
    keep=1.0,
    strategy="random",
  )
  export_subset(everything, digits, root, format="tfds", name="digits_local")
  return root


def test_a_tfds_dataset_is_scored_pruned_exported_and_loads_back_with_the_same_ids(tfds_digits, tmp_path):
  import tensorflow_datasets as tfds

  data = pruning.load_dataset("tfds:digits_local:train", data_dir=str(tfds_digits))
  digits = pruning.load_dataset("digits")
  assert sorted(data.train.ids) == sorted(digits.train.ids) and len(data.test) == len(digits.test)
  manifest = pruning.score_dataset(data, model="linear", training=TrainConfig(epochs=2), seeds=[0, 1], progress=False)
  subset = pruning.select(manifest, keep=0.4, strategy="hardest", class_rule="balanced", score="el2n")
  out = tmp_path / "exported"
  final = export_subset(subset, data, out, format="tfds", name="digits_pruned", version="1.2.0")
  assert final == out / "digits_pruned" / "1.2.0"
  builder = tfds.builder_from_directory(str(final))
  assert builder.info.metadata["selection"] and builder.info.features["label"].num_classes == 10
  source = builder.as_data_source("train")
  kept = subset.table.set_index("example_id")
  assert len(source) == len(kept)
  by_id = {ex["example_id"].decode(): ex for ex in (source[i] for i in range(len(source)))}
  assert set(by_id) == set(kept.index)
  for example_id, example in list(by_id.items())[:50]:
    row = int(kept.loc[example_id, "index"])
    assert np.array_equal(example["x"], data.train.x[row]) and example["label"] == data.train.y[row]
  assert len(tfds.data_source("digits_pruned", split="test", data_dir=str(out))) == len(data.test)
  again = pruning.load_dataset("tfds:digits_pruned:train", data_dir=str(out))
  assert sorted(again.train.ids) == sorted(kept.index)
  with pytest.raises(UserError, match="already exists"):
    export_subset(subset, data, out, format="tfds", name="digits_pruned", version="1.2.0")


def test_tfds_versions_and_split_slicing(tfds_digits):
  half = pruning.load_dataset("tfds:digits_local:1.0.0:train[:50%]", data_dir=str(tfds_digits), test_split=None)
  full = pruning.load_dataset("tfds:digits_local:train", data_dir=str(tfds_digits), test_split=None)
  assert len(half.train) == math.ceil(len(full.train) / 2) or len(half.train) == len(full.train) // 2
  assert set(half.train.ids) < set(full.train.ids)
  with pytest.raises(UserError, match="could not open"):
    pruning.load_dataset("tfds:digits_local:9.9.9:train", data_dir=str(tfds_digits))


@pytest.mark.parametrize(
  "name, version, message",
  [
    ("../escape", "1.0.0", "snake_case"),
    ("/abs/path", "1.0.0", "snake_case"),
    ("Digits", "1.0.0", "snake_case"),
    (None, "1.0.0", "snake_case"),
    ("ok_name", "1.0", "1.0.0"),
    ("ok_name", "../1.0.0", "1.0.0"),
  ],
)
def test_unsafe_tfds_names_are_refused(linear_manifest, digits, tmp_path, name, version, message):
  with pytest.raises(UserError, match=message):
    export_subset(linear_manifest, digits, tmp_path, format="tfds", name=name, version=version)
  assert not any(tmp_path.iterdir())


def test_image_folder_export(tmp_path):
  x, y = small_images(n=30, num_classes=3, shape=(6, 6, 1))
  x = np.round(np.clip(x * 40 + 100, 0, 255))
  data_path = write_npz(tmp_path / "img.npz", x=x, y=y, x_test=x[:6], y_test=y[:6])
  data = pruning.load_dataset(f"npz:{data_path}")
  manifest = pruning.score_dataset(data, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False)
  subset = pruning.select(manifest, keep=12, strategy="random", class_rule="balanced")
  out = export_subset(subset, data, tmp_path / "folder", format="images")
  from PIL import Image

  files = sorted((out / "train").rglob("*.png"))
  assert len(files) == 12 and sorted(p.parent.name for p in files).count("0") == 4
  for path in files:
    row = int(path.stem)  # npz ids are row numbers
    assert np.array_equal(np.asarray(Image.open(path)), x[row, :, :, 0].astype(np.uint8))
    assert int(path.parent.name) == y[row]
  assert len(list((out / "test").rglob("*.png"))) == 6
  with pytest.raises(UserError, match="already exists"):
    export_subset(subset, data, out, format="images")


@pytest.mark.slow
def test_image_export_refuses_unsafe_class_names_and_non_images(tmp_path):
  x, y = small_images(n=20, num_classes=2, shape=(4, 4, 1))
  bad = pruning.data.make_dataset(
    "bad", pruning.data.make_split(x, y, None, source="t"), None, class_names=["cat", "../dog"]
  )
  manifest = pruning.score_dataset(bad, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False)
  with pytest.raises(UserError, match="'../dog' .*cannot name a file"):
    export_subset(manifest, bad, tmp_path / "out", format="images")
  assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*"))
  x, y = small_images(n=20, num_classes=2, shape=(5,))
  signals = pruning.data.make_dataset("signals", pruning.data.make_split(x, y, None, source="t"), None)
  manifest = pruning.score_dataset(signals, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False)
  with pytest.raises(UserError, match="needs images"):
    export_subset(manifest, signals, tmp_path / "d", format="images")


@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_rebalancing_oversamples_minorities_to_the_target(ratio):
  labels = np.repeat([0, 1, 2], [100, 30, 7])
  rows = rebalanced_rows(labels, ratio, seed=3)
  counts = np.bincount(labels[rows])
  target = math.ceil(ratio * 100)
  assert counts[0] == 100 and np.all(counts[1:] == np.maximum([30, 7], target))
  # Every original kept once, copies spread evenly: no example is repeated more than once beyond another.
  per_row = np.bincount(rows, minlength=len(labels))
  for label in (1, 2):
    members = per_row[labels == label]
    assert members.min() >= 1 and members.max() - members.min() <= 1
  assert np.array_equal(rows, rebalanced_rows(labels, ratio, seed=3))
  with pytest.raises(UserError, match="rebalance"):
    rebalanced_rows(labels, 1.5)


def test_rebalanced_npz_export_keeps_ids_unique_through_the_cli(tmp_path, capsys, linear_manifest):
  manifest = tmp_path / "m.parquet"
  linear_manifest.to_parquet(manifest)
  subset = tmp_path / "s.parquet"
  assert main(["select", str(manifest), "--keep", "0.3", "--score", "el2n", "--out", str(subset)]) == 0
  out = tmp_path / "r.npz"
  assert (
    main(["export", str(subset), "--data", "digits", "--format", "npz", "--rebalance", "1", "--out", str(out)]) == 0
  )
  exported = pruning.load_dataset(f"npz:{out}")
  counts = np.bincount(exported.train.y)
  assert counts.min() == counts.max()
  assert any("~rep1" in i for i in exported.train.ids)
  capsys.readouterr()
  assert (
    main(
      ["export", str(subset), "--data", "digits", "--format", "tfds", "--name", "../x", "--out", str(tmp_path / "t")]
    )
    == 2
  )
  assert "snake_case" in capsys.readouterr().err


def test_a_tfrecord_dataset_without_tensorflow_names_the_extra(tfds_digits, tmp_path):
  """TFRecord has no random access, so it needs tf.data; without TensorFlow the error names the extra."""
  import json
  import shutil

  pytest.importorskip("tensorflow_datasets")
  try:
    import tensorflow  # noqa: F401

    pytest.skip("TensorFlow is installed: the tf.data path runs instead")
  except ImportError:
    pass
  copy = tmp_path / "digits_local"
  shutil.copytree(tfds_digits / "digits_local", copy)
  info_path = copy / "1.0.0" / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(UserError, match=r"stored as TFRecord.*pruning\[tensorflow\]"):
    pruning.load_dataset("tfds:digits_local:train", data_dir=str(tmp_path))


def test_a_tfrecord_dataset_reads_through_tf_data_with_tensorflow(tmp_path, digits):
  """Runs where the `tensorflow` extra is installed (not in the default CI install)."""
  pytest.importorskip("tensorflow")
  import tensorflow_datasets as tfds

  class TinyRecords(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    name = "tiny_records"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        supervised_keys=("image", "label"),
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(0, 200), "test": self._generate_examples(200, 260)}

    def _generate_examples(self, start, stop):
      for i in range(start, stop):
        yield i, {"image": digits.train.x[i], "label": int(digits.train.y[i])}

  TinyRecords(data_dir=str(tmp_path), file_format="tfrecord").download_and_prepare()
  data = pruning.load_dataset("tfds:tiny_records:train[:50%]", data_dir=str(tmp_path))
  reference = tfds.load(
    "tiny_records",
    split="train[:50%]",
    data_dir=str(tmp_path),
    shuffle_files=False,
    read_config=tfds.ReadConfig(add_tfds_id=True),
  )
  examples = list(tfds.as_numpy(reference))
  assert list(data.train.ids) == [e["tfds_id"].decode() for e in examples] and len(data.test) == 60
  assert np.array_equal(data.train.x, np.stack([e["image"] for e in examples]))


def test_a_subset_of_transformed_data_exports_without_repeating_the_transforms(tmp_path, capsys):
  from pruning.cli import main

  manifest = tmp_path / "m.parquet"
  assert (
    main(
      [
        "score",
        "--data",
        "digits",
        "--long-tail",
        "20",
        "--validation",
        "0.1",
        "--data-seed",
        "3",
        "--model",
        "linear",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--no-progress",
        "--out",
        str(manifest),
      ]
    )
    == 0
  )
  assert main(["select", str(manifest), "--keep", "0.5", "--out", str(tmp_path / "s.parquet")]) == 0
  capsys.readouterr()
  assert (
    main(
      ["export", str(tmp_path / "s.parquet"), "--data", "digits", "--format", "ids", "--out", str(tmp_path / "ids.txt")]
    )
    == 0
  )
  err = capsys.readouterr().err
  assert "--validation 0.1 --data-seed 3 --long-tail 20.0" in err or "--long-tail 20.0" in err
  kept = (tmp_path / "ids.txt").read_text().split()
  assert kept == pruning.Manifest.read_parquet(tmp_path / "s.parquet").table["example_id"].tolist()
  # Another transform given by hand: refused, naming the flag and what the subset records.
  assert (
    main(
      [
        "export",
        str(tmp_path / "s.parquet"),
        "--data",
        "digits",
        "--long-tail",
        "10",
        "--format",
        "ids",
        "--out",
        str(tmp_path / "other.txt"),
      ]
    )
    == 2
  )
  err = capsys.readouterr().err
  assert "--long-tail 10.0 (recorded: 20.0)" in err and "fingerprint" in err


def test_image_pixels_fill_the_png_range_and_rebalanced_counts_are_reported(tmp_path, capsys, digits):
  from PIL import Image

  from pruning.cli import main

  subset = pruning.select(
    pruning.score_dataset(digits, model="linear", training=TrainConfig(epochs=1), seeds=[0], progress=False),
    keep=0.5,
    strategy="hardest",
    class_rule="global",
    score="el2n",
  )
  subset.to_parquet(tmp_path / "s.parquet")
  capsys.readouterr()
  assert (
    main(
      [
        "export",
        str(tmp_path / "s.parquet"),
        "--data",
        "digits",
        "--format",
        "images",
        "--rebalance",
        "1",
        "--out",
        str(tmp_path / "imgs"),
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  pngs = list((tmp_path / "imgs" / "train").rglob("*.png"))
  assert f"wrote {tmp_path / 'imgs'}: {len(pngs)} examples" in out and "copies" in out
  first = pngs[0]
  row = int(first.stem.split("~")[0].split("-")[1])
  pixels = np.asarray(Image.open(first))
  # digits' 0..16 scaled by 255/16: a stroke is bright, not near-black.
  expected = np.round(digits.train.x[list(digits.train.ids).index(f"digits-{row}")][..., 0] * 255 / 16)
  assert np.array_equal(pixels, expected.astype(np.uint8)) and pixels.max() > 200
