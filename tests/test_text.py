"""Text data: tables with text columns, tokenizers, the synthetic corpus and the cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pruning
from pruning.data import text as text_data
from pruning.data import tokenizer as tokenizers
from pruning.data.synthetic_text import CLASSES, generate


def write_sentences(path, n=40, *, pairs=False, split=False, **columns):
  rng = np.random.default_rng(0)
  words = ["good", "bad", "film", "plot", "actor", "great", "awful", "scene", "music", "long"]
  frame = pd.DataFrame(
    {
      "text": [" ".join(rng.choice(words, size=rng.integers(2, 9))) for _ in range(n)],
      "label": np.arange(n) % 2,
      "example_id": [f"s{i}" for i in range(n)],
      "source": ["web"] * n,  # an unrelated column: ignored for text data
    }
  )
  if pairs:
    frame["hypothesis"] = [" ".join(rng.choice(words, size=3)) for _ in range(n)]
  if split:
    frame["split"] = np.where(np.arange(n) % 4 == 0, "test", "train")
  for name, values in columns.items():
    frame[name] = values
  if str(path).endswith(".csv"):
    frame.to_csv(path, index=False)
  else:
    frame.to_parquet(path)
  return frame


def test_a_csv_with_a_text_column_becomes_token_ids(tmp_path):
  frame = write_sentences(tmp_path / "s.csv", split=True)
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=100, max_length=16)
  assert data.is_text and data.text_columns == ("text",) and data.normalize == "none"
  train = frame[frame.split == "train"]
  assert data.train.x.shape == (len(train), 16) and data.train.x.dtype == np.float32
  assert list(data.train.text) == list(train.text) and list(data.train.ids) == list(train.example_id)
  assert len(data.test) == (frame.split == "test").sum()
  cls, sep = data.tokenizer_json and (
    json.loads(data.tokenizer_json)["post_processor"]["special_tokens"][t]["ids"][0] for t in ("[CLS]", "[SEP]")
  )
  ids = data.train.x.astype(int)
  assert np.all(ids[:, 0] == cls)
  lengths = (ids != data.tokenizer["pad_id"]).sum(axis=1)
  assert np.all(ids[np.arange(len(ids)), lengths - 1] == sep)  # [CLS] words [SEP] then padding
  assert np.all(ids[np.arange(16)[None, :] >= lengths[:, None]] == data.tokenizer["pad_id"])


def test_token_ids_match_the_library_encoding_each_sentence_alone(tmp_path):
  """The batched, padded encoding equals `tokenizers` encoding one sentence at a time."""
  write_sentences(tmp_path / "s.parquet")
  data = pruning.load_dataset(f"parquet:{tmp_path / 's.parquet'}", vocab_size=60, max_length=6)
  from tokenizers import Tokenizer

  tokenizer = Tokenizer.from_str(data.tokenizer_json)
  tokenizer.no_padding()
  tokenizer.no_truncation()
  for row, sentence in enumerate(data.train.text):
    ids = tokenizer.encode(sentence).ids
    if len(ids) > 6:  # truncation keeps the final [SEP]
      ids = ids[:5] + ids[-1:]
    expected = ids + [0] * (6 - len(ids))
    assert data.train.x[row].astype(int).tolist() == expected


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_a_trained_tokenizer_is_the_same_twice_and_recorded(tmp_path, monkeypatch, kind):
  write_sentences(tmp_path / "s.csv")
  first = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=80, tokenizer=kind, max_length=12)
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "other-cache"))  # no cache: trained again
  second = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=80, tokenizer=kind, max_length=12)
  assert first.tokenizer_json == second.tokenizer_json
  assert np.array_equal(first.train.x, second.train.x) and first.fingerprint == second.fingerprint
  record = first.describe()["tokenizer"]
  assert record["kind"] == kind and record["max_length"] == 12 and len(record["sha256"]) == 64


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_training_a_tokenizer_again_gives_the_same_ids(kind):
  """`tokenizers`' WordPiece trainer numbered word-internal symbols in hash order, which changes
  with every training, even in one process: the merges taken, and so the ids, changed with it."""
  data = pruning.load_dataset("synthtext", vocab_size=200, max_length=16)
  texts = np.asarray(data.train.text)
  options = tokenizers.TokenizerOptions(tokenizer=kind, vocab_size=200, max_length=16)
  trained = [tokenizers.train_tokenizer(texts, options) for _ in range(3)]
  assert len({t.to_str() for t in trained}) == 1
  first = trained[0]
  if kind == "wordpiece":  # the numbered symbols are vocabulary, not special tokens matched in raw text
    assert first.get_vocab_size() == 200 and "##e" in first.get_vocab()
    assert "##e" not in first.encode("x ##e").tokens
    assert [first.token_to_id(t) for t in tokenizers.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]


def test_sentence_pairs_carry_token_types(tmp_path):
  write_sentences(tmp_path / "p.csv", pairs=True)
  data = pruning.load_dataset(
    f"csv:{tmp_path / 'p.csv'}", text_column="text", text_pair_column="hypothesis", vocab_size=80, max_length=24
  )
  assert data.train.x.shape == (40, 2, 24) and data.train.text.shape == (40, 2)
  ids, types = data.train.x[:, 0].astype(int), data.train.x[:, 1].astype(int)
  sep = json.loads(data.tokenizer_json)["post_processor"]["special_tokens"]["[SEP]"]["ids"][0]
  for row in range(5):
    real = ids[row] != 0
    first_sep = int(np.flatnonzero(ids[row] == sep)[0])
    assert np.all(types[row, : first_sep + 1] == 0)  # [CLS] A [SEP]
    assert np.all(types[row, first_sep + 1 : real.sum()] == 1)  # B [SEP]


def test_cached_ids_are_read_back_without_tokenizing(tmp_path, monkeypatch):
  write_sentences(tmp_path / "s.csv")
  first = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=60)
  assert list((tmp_path.parent).glob("**/tokens/*.npz")) or list(text_data.cache_folder().glob("*.npz"))

  def refuse(*args, **kwargs):
    raise AssertionError("tokenised again despite the cache")

  monkeypatch.setattr(tokenizers, "train_tokenizer", refuse)
  again = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=60)
  assert np.array_equal(first.train.x, again.train.x) and first.tokenizer == again.tokenizer
  with pytest.raises(AssertionError):  # other options are another cache entry
    pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=61)


def test_transforms_keep_text_aligned_with_labels_and_ids(tmp_path):
  frame = write_sentences(tmp_path / "s.csv", n=120)
  data = pruning.load_dataset(
    f"csv:{tmp_path / 's.csv'}", holdout=0.25, long_tail=3, label_noise=0.2, seed=1, vocab_size=60
  )
  by_id = frame.set_index("example_id")
  for split in (data.train, data.test):
    assert [by_id.loc[i, "text"] for i in split.ids] == list(split.text)
  assert np.array_equal(data.train.clean_y, [by_id.loc[i, "label"] for i in data.train.ids])
  assert data.train.is_noisy.any()
  names = [t["transform"] for t in data.transforms]
  assert names == ["hold_out_test", "long_tail", "label_noise"]


def test_the_tokenizer_is_trained_on_the_training_split_only(tmp_path):
  n = 40
  texts = [f"common words here {'zebra' if i % 4 == 0 else 'plain'}" for i in range(n)]
  write_sentences(tmp_path / "s.csv", n=n, split=True, text=texts)  # every 'zebra' row is a test row
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=200)
  assert "zebra" not in json.loads(data.tokenizer_json)["model"]["vocab"]


@pytest.mark.parametrize(
  ("columns", "options", "match"),
  [
    ({}, {"text_column": "sentence"}, "no text column 'sentence'"),
    ({"text": [""] + ["fine words"] * 39}, {}, "row 0 is empty"),
    ({"text": ["   "] + ["fine words"] * 39}, {}, "row 0 is empty"),
    ({}, {"text_pair_column": "hypothesis"}, "needs its first text column"),
    ({}, {"normalize": "per_feature"}, "never standardised"),
    ({}, {"max_length": 2}, "max_length 2"),
  ],
)
def test_bad_text_input_is_one_line(tmp_path, columns, options, match):
  write_sentences(tmp_path / "s.csv", **columns)
  with pytest.raises(pruning.UserError, match=match):
    pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", **options)


def test_non_string_text_in_parquet_names_the_row(tmp_path):
  write_sentences(tmp_path / "s.parquet", text=list(range(40)))
  with pytest.raises(pruning.UserError, match="row 0 holds int 0, not a string"):
    pruning.load_dataset(f"parquet:{tmp_path / 's.parquet'}")


def test_a_csv_with_numbers_as_text_reads_them_as_text(tmp_path):
  write_sentences(tmp_path / "s.csv", text=[str(1000 + i) for i in range(40)])
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", text_column="text", vocab_size=60)
  assert data.train.text[0] == "1000"


def test_loading_a_tokenizer_from_a_vocab_file(tmp_path):
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "##s"]
  (tmp_path / "ckpt").mkdir()
  (tmp_path / "ckpt" / "vocab.txt").write_text("\n".join(vocab) + "\n")
  write_sentences(tmp_path / "s.csv", text=["Good films"] * 20 + ["bad film"] * 20)
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", tokenizer=str(tmp_path / "ckpt"), max_length=6)
  assert data.tokenizer["kind"] == "pretrained" and data.tokenizer["vocab_size"] == len(vocab)
  assert data.train.x[0].astype(int).tolist() == [2, 5, 7, 8, 3, 0]  # [CLS] good film ##s [SEP] [PAD]
  with pytest.raises(pruning.UserError, match="neither tokenizer.json nor vocab.txt"):
    pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", tokenizer=str(tmp_path))


def test_synthtext_is_seeded_balanced_and_long_tailed():
  texts, labels, kinds = generate(400)
  again = generate(400)
  assert texts == again[0] and np.array_equal(labels, again[1])
  assert np.bincount(labels).tolist() == [100] * len(CLASSES)
  words = np.array([len(t.split()) for t in texts])
  assert np.percentile(words, 99) > 3 * np.median(words)  # a long tail of lengths
  assert set(np.unique(kinds)) == {0, 1, 2}
  data = pruning.load_dataset("synthtext", vocab_size=500, max_length=32)
  assert (len(data.train), len(data.test), data.num_classes) == (4000, 1000, 4)
  assert data.class_names == CLASSES


@pytest.mark.slow
def test_text_is_scored_selected_and_exported_with_its_text_from_the_command_line(tmp_path, capsys):
  """score -> select -> export (CSV, Parquet) on a CSV of sentences; the exports load back as the same text."""
  import tensorflow_datasets as tfds

  from pruning.cli import main

  frame = write_sentences(tmp_path / "s.csv", n=80, pairs=True, split=True)
  data = ["--data", f"csv:{tmp_path / 's.csv'}", "--text-column", "text", "--text-pair-column", "hypothesis"]
  common = [*data, "--vocab-size", "60", "--max-length", "16"]
  assert (
    main(
      [
        "score",
        *common,
        "--model",
        "transformer",
        "--model-option",
        "hidden=16",
        "--model-option",
        "mlp=16",
        "--model-option",
        "layers=1",
        "--epochs",
        "2",
        "--seeds",
        "2",
        "--score",
        "el2n",
        "--score",
        "grand",
        "--score",
        "vog",
        "--out",
        str(tmp_path / "m.parquet"),
      ]
    )
    == 0
  )
  manifest = pruning.Manifest.read_parquet(tmp_path / "m.parquet")
  assert manifest.provenance["dataset"]["tokenizer"]["vocab_size"] <= 60
  assert manifest.provenance["scores"]["vog"]["window"] == "all"
  assert (
    main(
      [
        "select",
        str(tmp_path / "m.parquet"),
        "--score",
        "grand",
        "--keep",
        "0.5",
        "--out",
        str(tmp_path / "sub.parquet"),
      ]
    )
    == 0
  )
  # export re-tokenises with the options the manifest records (the fingerprint must match)
  for fmt, name in (("csv", "sub.csv"), ("parquet", "sub_table.parquet"), ("tfds", "tfds")):
    extra = ["--name", "sentences"] if fmt == "tfds" else []
    assert (
      main(
        [
          "export",
          str(tmp_path / "sub.parquet"),
          "--data",
          f"csv:{tmp_path / 's.csv'}",
          "--format",
          fmt,
          "--out",
          str(tmp_path / name),
          *extra,
        ]
      )
      == 0
    )
  by_id = frame.set_index("example_id")
  subset = pruning.Manifest.read_parquet(tmp_path / "sub.parquet")
  for path in (f"csv:{tmp_path / 'sub.csv'}", f"parquet:{tmp_path / 'sub_table.parquet'}"):
    back = pruning.load_dataset(path, text_column="text", text_pair_column="hypothesis", vocab_size=60)
    assert sorted(back.train.ids) == sorted(subset.table["example_id"])
    assert [by_id.loc[i, "text"] for i in back.train.ids] == list(back.train.text[:, 0])
    assert [by_id.loc[i, "hypothesis"] for i in back.train.ids] == list(back.train.text[:, 1])
  builder = tfds.builder_from_directory(str(next((tmp_path / "tfds").glob("*/*"))))
  assert isinstance(builder.info.features["text"], tfds.features.Text)
  back = pruning.load_dataset(
    "tfds:sentences:train", data_dir=str(tmp_path / "tfds"), text_column="text", text_pair_column="hypothesis"
  )
  assert [by_id.loc[i, "text"] for i in back.train.ids] == list(back.train.text[:, 0]) and len(back.train) == 30
  assert back.test is not None and len(back.test) == 20  # the test split goes with the subset
  assert (
    main(
      [
        "export",
        str(tmp_path / "sub.parquet"),
        "--data",
        f"csv:{tmp_path / 's.csv'}",
        "--format",
        "npz",
        "--out",
        str(tmp_path / "x.npz"),
      ]
    )
    == 2
  )
  assert "export as parquet, csv or tfds" in capsys.readouterr().err


def test_smote_on_token_ids_and_text_options_on_numbers_are_refused(tmp_path):
  write_sentences(tmp_path / "s.csv", split=True)
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", vocab_size=60)
  with pytest.raises(pruning.UserError, match="token ids are codes, not points: use --smote-space features"):
    pruning.retrain(
      data,
      spec=pruning.ModelSpec(model="transformer", training=pruning.TrainConfig(epochs=1)),
      remedy="smote",
      progress=False,
    )
  with pytest.raises(pruning.UserError, match="this source has no text: drop it"):
    pruning.load_dataset("digits", text_column="text")


def _damage_truncate(path):
  path.write_bytes(path.read_bytes()[:100])


def _damage_flip(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _damage_fifo(path):
  import os

  path.unlink()
  os.mkfifo(path)


def _replace_ids(path, change):
  with np.load(path) as stored:
    arrays = {name: stored[name] for name in stored.files}
  name = next(n for n in arrays if n.startswith("x_"))
  arrays[name] = change(arrays[name])
  with open(path, "wb") as handle:
    np.savez(handle, **arrays)


@pytest.mark.parametrize(
  "damage",
  [
    _damage_truncate,
    _damage_flip,
    _damage_fifo,
    lambda p: p.write_bytes(b"not an npz at all"),
    lambda p: _replace_ids(p, lambda x: x[:, :-1]),  # wrong shape
    lambda p: _replace_ids(p, lambda x: np.where(x == x.max(), np.nan, x)),  # NaN ids
    lambda p: _replace_ids(p, lambda x: x + 1e6),  # ids past the vocabulary
  ],
  ids=["truncated", "bit-flip", "fifo", "foreign", "shape", "nan", "range"],
)
def test_a_damaged_token_cache_entry_is_discarded_with_a_warning_and_recomputed(tmp_path, monkeypatch, damage):
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "cache"))
  write_sentences(tmp_path / "s.csv", n=40, split=True)
  options = dict(vocab_size=60, max_length=16, tokenizer="bpe")
  first = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", **options)
  (entry,) = (tmp_path / "cache" / "tokens").glob("*.npz")
  damage(entry)
  with pytest.warns(UserWarning, match="token cache entry .* discarded and tokenised again"):
    again = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", **options)
  np.testing.assert_array_equal(again.train.x, first.train.x)
  assert again.fingerprint == first.fingerprint
  # The entry was written anew: the next load reads it without a word.
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")
    third = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", **options)
  assert third.fingerprint == first.fingerprint
