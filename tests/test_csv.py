"""CSV tables: the same dataset as the same table in Parquet, categorical columns, bad files, every command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pruning
from pruning.cli import main
from pruning.errors import UserError


def _table(n=300, seed=0) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  y = (rng.random(n) < 0.15).astype(int)
  return pd.DataFrame(
    {
      "example_id": [f"row-{i}" for i in range(n)],
      "income": rng.normal(50_000, 15_000, n) + 20_000 * y,  # columns of very different scales
      "age": rng.normal(40, 10, n) - 5 * y,
      "city": rng.choice(["paris", "oslo", "lima"], n),
      "label": y,
      "split": np.where(np.arange(n) % 5 == 0, "test", "train"),
    }
  )


def test_a_csv_loads_as_the_same_table_in_parquet(tmp_path):
  table = _table().drop(columns=["city"])
  table.to_csv(tmp_path / "t.csv", index=False)
  table.to_parquet(tmp_path / "t.parquet", index=False)
  from_csv = pruning.load_dataset(f"csv:{tmp_path / 't.csv'}")
  from_parquet = pruning.load_dataset(f"parquet:{tmp_path / 't.parquet'}")
  for name in ("train", "test"):
    a, b = getattr(from_csv, name), getattr(from_parquet, name)
    np.testing.assert_array_equal(a.ids.astype(str), b.ids.astype(str))
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-6)  # CSV holds decimal text: equal to float32 rounding
  assert len(from_csv.test) == 60


def test_categorical_columns_are_refused_or_one_hot_encoded_as_pandas_does(tmp_path):
  table = _table()
  table.to_csv(tmp_path / "t.csv", index=False)
  with pytest.raises(UserError, match="--categorical onehot"):
    pruning.load_dataset(f"csv:{tmp_path / 't.csv'}")
  dataset = pruning.load_dataset(f"csv:{tmp_path / 't.csv'}", categorical="onehot")
  train = table[table["split"] == "train"]
  expected = pd.concat(
    [train[["income", "age"]], pd.get_dummies(train["city"], prefix="city", prefix_sep="=", dtype=float)], axis=1
  )
  expected = expected[["income", "age", "city=lima", "city=oslo", "city=paris"]].to_numpy(np.float32)
  np.testing.assert_allclose(dataset.train.x, expected, rtol=1e-6)


def test_bad_csv_files_fail_with_one_line(tmp_path, capsys):
  cases = {
    "ragged.csv": "a,b,label\n1,2,0\n3,4,5,1\n",
    "empty.csv": "",
    "nolabel.csv": "a,b\n1,2\n3,4\n",
  }
  for name, text in cases.items():
    (tmp_path / name).write_text(text)
  (tmp_path / "latin.csv").write_bytes("caf\xe9,label\n1,0\n2,1\n".encode("latin-1"))
  for name, message in (
    ("ragged.csv", "does not match the header"),
    ("empty.csv", "empty"),
    ("nolabel.csv", "no label column"),
    ("latin.csv", "UTF-8"),
    ("missing.csv", "no such file"),
  ):
    capsys.readouterr()
    out = tmp_path / f"{name}.parquet"
    assert main(["score", "--data", f"csv:{tmp_path / name}", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_every_command_takes_a_csv(tmp_path, capsys):
  _table().to_csv(tmp_path / "t.csv", index=False)
  data = ["--data", f"csv:{tmp_path / 't.csv'}", "--categorical", "onehot"]
  manifest, subset = tmp_path / "m.parquet", tmp_path / "s.parquet"
  assert main(["score", *data, "--epochs", "1", "--seeds", "1", "--out", str(manifest), "--no-progress"]) == 0
  assert main(["select", str(manifest), "--keep", "0.5", "--out", str(subset)]) == 0
  assert main(["train", *data, "--subset", str(subset), "--epochs", "1", "--seeds", "1", "--no-progress"]) == 0
  assert main(["export", str(subset), *data, "--format", "npz", "--out", str(tmp_path / "e.npz")]) == 0
  assert main(["report", str(manifest), *data]) == 0
  assert main(["check", str(manifest), *data]) == 0
  exported = np.load(tmp_path / "e.npz")
  assert len(exported["y"]) == pruning.Manifest.read_parquet(subset).table.shape[0]


def test_the_tabular_source_is_scikit_learns_generator_at_the_stated_ratio():
  from sklearn.datasets import make_classification

  dataset = pruning.load_dataset("tabular:20")
  x, y = make_classification(
    n_samples=6000, n_features=12, n_informative=5, n_redundant=2, weights=[20 / 21], flip_y=0.01, random_state=0
  )
  rows = np.array([int(i.split("-")[1]) for i in dataset.train.ids])
  np.testing.assert_allclose(dataset.train.x, (x[rows] * 10.0 ** (np.arange(12) % 4)).astype(np.float32))
  np.testing.assert_array_equal(dataset.train.y, y[rows])
  counts = np.bincount(np.concatenate([dataset.train.y, dataset.test.y]))
  assert 15 < counts[0] / counts[1] < 25  # 20 : 1, less the 1% of labels flipped at random
  assert np.bincount(dataset.test.y)[1] / len(dataset.test) == pytest.approx(counts[1] / counts.sum(), abs=0.002)
  with pytest.raises(UserError, match="RATIO"):
    pruning.load_dataset("tabular:lots")


def test_an_index_column_is_refused_and_every_feature_is_named(tmp_path, capsys):
  """`to_csv` without index=False adds `Unnamed: 0`, which would be a feature; refused with the fix.
  The features used, one-hot columns included, are named in the provenance, the log and exports;
  an id-like column used as a feature is warned about."""
  import pandas as pd

  import pruning
  from pruning.cli import main
  from pruning.errors import UserError

  rng = np.random.default_rng(0)
  frame = pd.DataFrame(
    {
      "customer_id": np.arange(1000, 1060),
      "amount": rng.normal(size=60) * 100,
      "plan": rng.choice(["basic", "pro"], size=60),
      "label": np.arange(60) % 2,
    }
  )
  frame.to_csv(tmp_path / "indexed.csv")  # index=True: the classic mistake
  with pytest.raises(UserError, match="'Unnamed: 0' has no name .*index=False"):
    pruning.load_dataset(f"csv:{tmp_path / 'indexed.csv'}", categorical="onehot")
  frame.reset_index().rename(columns={"index": ""}).to_csv(tmp_path / "blank.csv", index=False)
  with pytest.raises(UserError, match="has no name"):
    pruning.load_dataset(f"csv:{tmp_path / 'blank.csv'}", categorical="onehot")
  frame.to_csv(tmp_path / "t.csv", index=False)
  with pytest.warns(UserWarning, match="'customer_id' looks like an identifier"):
    dataset = pruning.load_dataset(f"csv:{tmp_path / 't.csv'}", categorical="onehot", holdout=0.25)
  assert dataset.feature_columns == ("customer_id", "amount", "plan=basic", "plan=pro")
  out = tmp_path / "m.parquet"
  argv = ["score", "--data", f"csv:{tmp_path / 't.csv'}", "--categorical", "onehot", "--holdout", "0.25"]
  assert main([*argv, "--model", "linear", "--epochs", "1", "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
  assert "features (4): customer_id, amount, plan=basic, plan=pro" in capsys.readouterr().err
  manifest = pruning.Manifest.read_parquet(out)
  assert manifest.provenance["dataset"]["feature_columns"] == ["customer_id", "amount", "plan=basic", "plan=pro"]
  assert main(["select", str(out), "--keep", "0.5", "--out", str(tmp_path / "s.parquet")]) == 0
  assert main(["export", str(tmp_path / "s.parquet"), "--format", "csv", "--out", str(tmp_path / "e.csv")]) == 0
  assert list(pd.read_csv(tmp_path / "e.csv").columns[3:]) == ["customer_id", "amount", "plan=basic", "plan=pro"]


@pytest.mark.slow
def test_csv_details_users_hit(tmp_path, capsys):
  """Semicolons, a/a.1 columns, NA as text, short rows with their line, a text column under
  another name, and `pruning run` taking the table and text options."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 2))
  y = np.arange(40) % 2
  pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y}).to_csv(tmp_path / "semi.csv", sep=";", index=False)
  semi = pruning.load_dataset(f"csv:{tmp_path / 'semi.csv'}")
  np.testing.assert_allclose(semi.train.x, x.astype(np.float32), rtol=1e-6)
  pd.DataFrame({"a": x[:, 0], "a.1": x[:, 1], "label": y}).to_csv(tmp_path / "dots.csv", index=False)
  assert pruning.load_dataset(f"csv:{tmp_path / 'dots.csv'}").feature_columns == ("a", "a.1")
  (tmp_path / "twice.csv").write_text("a,a,label\n1,2,0\n3,4,1\n")
  with pytest.raises(UserError, match="column 'a' appears more than once in the header"):
    pruning.load_dataset(f"csv:{tmp_path / 'twice.csv'}")
  (tmp_path / "short.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,1\n7,8,1\n")
  with pytest.raises(UserError, match="line 4 has 2 fields, the header 3"):
    pruning.load_dataset(f"csv:{tmp_path / 'short.csv'}")
  words = ["NA", "null", "None", "good film", "bad plot", "n/a"]
  frame = pd.DataFrame({"text": [words[i % 6] for i in range(36)], "label": np.arange(36) % 2})
  frame.to_csv(tmp_path / "na.csv", index=False)
  frame.rename(columns={"text": "review"}).to_csv(tmp_path / "review.csv", index=False)
  for path, option in (("na.csv", {}), ("review.csv", {"text_column": "review"})):
    loaded = pruning.load_dataset(f"csv:{tmp_path / path}", vocab_size=40, max_length=8, **option)
    assert sorted(set(loaded.train.text)) == sorted(words)  # the same text either way
  sentences = pd.DataFrame({"review": [f"film number {i} was fine" for i in range(30)], "label": np.arange(30) % 2})
  sentences.to_csv(tmp_path / "s.csv", index=False)
  with pytest.raises(UserError, match="holds sentences, not numbers: .* --text-column review"):
    pruning.load_dataset(f"csv:{tmp_path / 's.csv'}")
  config = tmp_path / "c.yaml"
  config.write_text(
    "name: c\ndataset: {spec: digits}\nmodel: transformer\nmodel_options: {hidden: 16, mlp: 16, layers: 1}\n"
    "training: {epochs: 1}\nproxy: {seeds: 1, epochs: 1}\nselections: [{name: r, strategy: random, keep: 0.5}]\n"
    "retrain: {seeds: 1}\n"
  )
  argv = ["run", str(config), "--data", f"csv:{tmp_path / 's.csv'}", "--text-column", "review", "--max-length", "8"]
  assert main([*argv, "--holdout", "0.25", "--output", str(tmp_path / "run"), "--no-progress"]) == 0
  recorded = pruning.Manifest.read_parquet(tmp_path / "run" / "manifest.parquet").provenance["config"]["dataset"]
  assert (recorded["text_column"], recorded["max_length"]) == ("review", 8)
