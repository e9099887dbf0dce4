"""Commands on a manifest's data take it as the manifest records it: the spec,
every data option and, for text, the tokenizer itself, so a cleared token
cache or another process gives the same token ids (a trained WordPiece
vocabulary is not reproducible across processes)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_text import write_sentences

import pruning
from pruning.cli import main
from pruning.data import tokenizer as tokenizers

TWO_BLOCK_TRANSFORMER = ["--model", "transformer", "--model-option", "hidden=16", "--model-option", "mlp=16"]
# One block: these tests are about what a run records, and a second block only doubles the compile time.
TINY_TRANSFORMER = [*TWO_BLOCK_TRANSFORMER, "--model-option", "layers=1"]


def fresh_cache(tmp_path, monkeypatch, name):
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / name))


def never_retrain(monkeypatch):
  """Training a tokenizer from here on fails the test: commands must reuse the recorded one."""

  def retrained(*args, **kwargs):
    raise AssertionError("a tokenizer was trained again instead of the recorded one being used")

  monkeypatch.setattr(tokenizers, "train_tokenizer", retrained)


@pytest.fixture
def text_manifest(tmp_path):
  write_sentences(tmp_path / "s.csv", n=80, split=True)
  args = ["score", "--data", f"csv:{tmp_path / 's.csv'}", "--vocab-size", "60", "--max-length", "16"]
  args += [*TINY_TRANSFORMER, "--epochs", "1", "--seeds", "2", "--score", "el2n", "--no-progress"]
  assert main([*args, "--out", str(tmp_path / "m.parquet")]) == 0
  return tmp_path / "m.parquet"


@pytest.mark.slow  # a text pipeline: compiling the transformer dominates
def test_the_manifest_stores_its_tokenizer_and_the_vocabulary_size_asked_for(text_manifest):
  manifest = pruning.Manifest.read_parquet(text_manifest)
  record = manifest.provenance["dataset"]["tokenizer"]
  stored = manifest.provenance["tokenizer_json"]
  import hashlib

  assert hashlib.sha256(stored.encode()).hexdigest() == record["sha256"]
  assert record["requested_vocab_size"] == 60 and record["vocab_size"] <= 60


@pytest.mark.slow  # a text pipeline: compiling the transformer dominates
def test_text_commands_need_neither_data_flags_nor_the_token_cache(text_manifest, tmp_path, monkeypatch, capsys):
  """select, export, flag, train --subset, report and check on a text manifest after the
  token cache is cleared, without --data: each tokenises with the recorded tokenizer."""
  fresh_cache(tmp_path, monkeypatch, "empty-cache")
  never_retrain(monkeypatch)
  m, sub = str(text_manifest), str(tmp_path / "sub.parquet")
  assert main(["select", m, "--keep", "0.5", "--out", sub]) == 0
  assert main(["export", sub, "--format", "csv", "--out", str(tmp_path / "sub.csv")]) == 0
  assert (pd.read_csv(tmp_path / "sub.csv")["split"] == "train").sum() == 30
  flagged = ["flag", m, "--folds", "2", "--out", str(tmp_path / "f.parquet"), "--no-progress"]
  assert main(flagged) == 0
  train = ["train", "--subset", sub, *TINY_TRANSFORMER, "--epochs", "1", "--seeds", "1", "--no-progress"]
  assert main(train) == 0
  assert main(["check", m, "--data", f"csv:{tmp_path / 's.csv'}"]) == 0
  assert main(["report", m, "--data", f"csv:{tmp_path / 's.csv'}"]) == 0
  err = capsys.readouterr().err
  assert "data as the subset records: --data csv:" in err and "--vocab-size 60 --max-length 16" in err


@pytest.mark.slow  # a text pipeline: compiling the transformer dominates
def test_an_explicit_data_flag_overrides_the_record_and_is_checked(text_manifest, tmp_path, capsys):
  sub = str(tmp_path / "sub.parquet")
  assert main(["select", str(text_manifest), "--keep", "0.5", "--out", sub]) == 0
  capsys.readouterr()
  assert main(["export", sub, "--max-length", "32", "--format", "csv", "--out", str(tmp_path / "x.csv")]) == 2
  error = capsys.readouterr().err.splitlines()[-1]
  assert "--max-length 32 (recorded: 16)" in error and "drop that flag" in error
  assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_table_options_come_from_the_record(tmp_path):
  """A CSV with a categorical column, one-hot encoded, with a holdout: train --subset and
  export repeat neither --data, --categorical nor --holdout."""
  rng = np.random.default_rng(0)
  n = 120
  frame = pd.DataFrame(
    {
      "amount": rng.normal(size=n) * 1000,
      "plan": rng.choice(["basic", "pro", "team"], size=n),
      "label": np.arange(n) % 2,
    }
  )
  frame.to_csv(tmp_path / "t.csv", index=False)
  data = ["--data", f"csv:{tmp_path / 't.csv'}", "--categorical", "onehot", "--holdout", "0.25"]
  m, sub = str(tmp_path / "m.parquet"), str(tmp_path / "sub.parquet")
  assert main(["score", *data, "--model", "linear", "--epochs", "1", "--seeds", "1", "--out", m]) == 0
  assert main(["select", m, "--keep", "0.5", "--out", sub]) == 0
  assert main(["train", "--subset", sub, "--model", "linear", "--epochs", "1", "--seeds", "1", "--no-progress"]) == 0
  assert main(["export", sub, "--format", "parquet", "--out", str(tmp_path / "sub_t.parquet")]) == 0
  exported = pd.read_parquet(tmp_path / "sub_t.parquet")
  assert (exported["split"] == "train").sum() == len(pruning.Manifest.read_parquet(sub))


@pytest.mark.slow  # a text pipeline: compiling the transformer dominates
def test_a_text_run_resumes_with_its_own_tokenizer_after_the_cache_is_cleared(tmp_path, monkeypatch):
  """Killed after scoring, the cache cleared, run again: the run tokenises with the
  tokenizer.json it saved and ends as an uninterrupted run does, byte for byte."""
  import pruning.jobs.run as run_module
  from pruning.config import parse_config

  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
  write_sentences(tmp_path / "s.csv", n=80, split=True)
  config = parse_config(
    {
      "name": "text",
      "dataset": {"spec": f"csv:{tmp_path / 's.csv'}", "vocab_size": 60, "max_length": 16},
      "model": "transformer",
      "model_options": {"hidden": 16, "mlp": 16, "layers": 1},
      "training": {"epochs": 1, "batch_size": 16},
      "proxy": {"seeds": 2, "epochs": 1},
      "scores": ["el2n"],
      "selections": [{"name": "hard", "score": "el2n", "keep": 0.5}],
      "retrain": {"seeds": 1},
    },
    source="test",
  )
  pruning.run_pipeline(config, output_dir=tmp_path / "reference", progress=False, log=lambda line: None)

  class Killed(Exception):
    pass

  def killed(*args, **kwargs):
    raise Killed

  # The killed run reads the reference's cached tokens (WordPiece trained again,
  # even in this process, may come out different); the resumed one finds none.
  with monkeypatch.context() as patch:
    patch.setattr(run_module, "retrain_arm", killed)
    with pytest.raises(Killed):
      pruning.run_pipeline(config, output_dir=tmp_path / "run", progress=False, log=lambda line: None)
  assert (tmp_path / "run" / ".resume" / "scored").is_file()
  fresh_cache(tmp_path, monkeypatch, "cleared-cache")
  never_retrain(monkeypatch)
  pruning.run_pipeline(config, output_dir=tmp_path / "run", progress=False, log=lambda line: None)
  for name in ("manifest.parquet", "subsets/hard.parquet", "report.json", "tokenizer.json"):
    assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name


@pytest.mark.slow  # a text pipeline: compiling the transformer dominates
def test_formula_cells_are_escaped_in_the_suspects_csv_and_named_on_a_csv_export(tmp_path, capsys):
  """Sentences and class names beginning with = + - @ never reach the relabelling table verbatim
  (a spreadsheet would run them); the round-trip export keeps them and says so."""
  import csv

  starts = ['=HYPERLINK("http://x") ', "+1 ", "-2 ", "@me "]
  frame = write_sentences(tmp_path / "plain.csv", n=80, split=True)
  frame["text"] = [starts[i % 4] + t for i, t in enumerate(frame["text"])]
  frame["label"] = np.where(frame["label"] == 0, "=cmd|' /C calc'!A0", "@positive")
  frame.to_csv(tmp_path / "s.csv", index=False)
  args = ["score", "--data", f"csv:{tmp_path / 's.csv'}", "--vocab-size", "60", "--max-length", "16"]
  args += [*TINY_TRANSFORMER, "--epochs", "1", "--seeds", "1", "--score", "el2n", "--no-progress"]
  m = str(tmp_path / "m.parquet")
  assert main([*args, "--out", m]) == 0
  suspects = tmp_path / "suspects.csv"
  flag = ["flag", m, "--folds", "2", "--out", str(tmp_path / "f.parquet"), "--suspects", str(suspects)]
  assert main([*flag, "--no-progress"]) == 0
  with open(suspects, newline="") as handle:
    rows = list(csv.reader(handle))
  assert len(rows) > 1, "nothing was flagged: the test needs suspects"
  cells = [cell for row in rows[1:] for cell in row]
  assert not [c for c in cells if c[:1] in ("=", "+", "@")], "a cell a spreadsheet runs as a formula"
  assert any(c.startswith("'=cmd") for c in cells) and any(c.startswith("'@positive") for c in cells)
  for cell in cells:  # a minus sign only on numbers
    if cell.startswith("-"):
      float(cell)
  sub = str(tmp_path / "sub.parquet")
  assert main(["select", m, "--keep", "0.5", "--out", sub]) == 0
  capsys.readouterr()
  with pytest.warns(UserWarning, match="begin with = \\+ - or @, which a spreadsheet runs as a formula"):
    assert main(["export", sub, "--format", "csv", "--out", str(tmp_path / "sub.csv")]) == 0
  exported = pd.read_csv(tmp_path / "sub.csv")
  assert set(exported["text"]) <= set(frame["text"])  # verbatim: csv:PATH loads back the same text


@pytest.mark.slow  # a text pipeline: compiling the transformer dominates
def test_a_text_runs_tokenizer_is_in_its_record_and_cleared_by_overwrite(tmp_path, capsys):
  from pruning.jobs.run_folder import clear_run_outputs

  write_sentences(tmp_path / "s.csv", n=40, split=True)
  config = tmp_path / "c.yaml"
  config.write_text(
    f"name: c\ndataset: {{spec: 'csv:{tmp_path / 's.csv'}', vocab_size: 60, max_length: 12}}\nmodel: transformer\n"
    "model_options: {hidden: 16, mlp: 16, layers: 1}\ntraining: {epochs: 1}\nproxy: {seeds: 1, epochs: 1}\n"
    "selections: [{name: r, strategy: random, keep: 0.5}]\nretrain: {seeds: 1}\n"
  )
  run = tmp_path / "run"
  assert main(["run", str(config), "--output", str(run), "--no-progress"]) == 0
  assert "tokenizer.json" in json.loads((run / "run-record.json").read_text())["files"]
  (run / "tokenizer.json").write_text((run / "tokenizer.json").read_text().replace("[UNK]", "[UNKNOWN]"))
  capsys.readouterr()
  assert main(["check", str(run)]) == 1
  assert "tokenizer.json differs from what the run wrote" in capsys.readouterr().out
  clear_run_outputs(run)
  assert not (run / "tokenizer.json").exists()
