"""The CLI end to end on digits, and every bad input: one line, exit status 2, nothing lost."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import small_images, write_npz

import pruning
from pruning.cli import main


def run(capsys, *argv):
  code = main([str(a) for a in argv])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


@pytest.mark.slow
def test_score_select_train_export_on_digits(tmp_path, capsys):
  manifest = tmp_path / "m.parquet"
  code, out, err = run(
    capsys,
    "score",
    "--data",
    "digits",
    "--model",
    "linear",
    "--epochs",
    "1",
    "--seeds",
    "2",
    "--score",
    "el2n",
    "--score",
    "margin",
    "--out",
    manifest,
    "--no-progress",
  )
  assert code == 0, err
  subset = tmp_path / "s.parquet"
  code, out, err = run(
    capsys,
    "select",
    manifest,
    "--score",
    "el2n",
    "--keep",
    "0.5",
    "--strategy",
    "hardest",
    "--class-rule",
    "proportional",
    "--out",
    subset,
  )
  assert code == 0, err
  assert "kept 719 of 1437" in out  # 719.5 rounds half up
  metrics = tmp_path / "metrics.json"
  code, out, err = run(
    capsys,
    "train",
    "--data",
    "digits",
    "--subset",
    subset,
    "--model",
    "linear",
    "--epochs",
    "10",
    "--learning-rate",
    "0.01",
    "--seeds",
    "2",
    "--out",
    metrics,
    "--no-progress",
  )
  assert code == 0, err
  report = json.loads(metrics.read_text())
  assert report["summary"]["kept"] == 719 and 0.8 < report["summary"]["accuracy"] <= 1
  assert len(report["per_seed"]) == 2
  for fmt, name in (("ids", "ids.txt"), ("npz", "x.npz"), ("parquet", "x.parquet")):
    code, out, err = run(capsys, "export", subset, "--data", "digits", "--format", fmt, "--out", tmp_path / name)
    assert code == 0, err
  kept = pruning.Manifest.read_parquet(subset).table["example_id"].tolist()
  assert (tmp_path / "ids.txt").read_text().split() == kept
  for spec in (f"npz:{tmp_path / 'x.npz'}", f"parquet:{tmp_path / 'x.parquet'}"):
    exported = pruning.load_dataset(spec)
    assert exported.train.ids.tolist() == kept
    assert exported.train.x.shape == (719, 8, 8, 1) and len(exported.test) == 360
    digits = pruning.load_dataset("digits")
    rows = pruning.Manifest.read_parquet(subset).table["index"].to_numpy()
    np.testing.assert_array_equal(exported.train.x, digits.train.x[rows])
    np.testing.assert_array_equal(exported.train.y, digits.train.y[rows])


@pytest.mark.slow
def test_run_pipeline_writes_a_run_folder(tmp_path, capsys):
  config = tmp_path / "tiny.yaml"
  config.write_text(
    "name: tiny\ndataset: digits\nmodel: linear\ntraining: {epochs: 2, batch_size: 128}\n"
    "proxy: {seeds: 2, epochs: 1}\nscores: [el2n]\n"
    "selections:\n  - {name: hard, score: el2n, strategy: hardest, class_rule: balanced, keep: 0.3}\n"
    "  - {name: random, strategy: random, keep: 0.3}\nretrain: {seeds: 2}\n"
  )
  out_dir = tmp_path / "run"
  code, out, err = run(capsys, "run", config, "--output", out_dir, "--no-progress")
  assert code == 0, err
  for name in (
    "manifest.parquet",
    "subsets/hard.parquet",
    "subsets/random.parquet",
    "report.json",
    "results.csv",
    "results.parquet",
    "summary.csv",
    "kept_per_class.png",
    "accuracy.png",
  ):
    assert (out_dir / name).is_file(), name
  assert "worst-class recall" in out and "random" in out
  report = json.loads((out_dir / "report.json").read_text())
  assert [a["name"] for a in report["arms"]] == ["full", "hard", "random"]
  kept = report["kept_per_class"]["hard"]
  assert sum(kept) == 431 and max(kept) - min(kept) == 1  # balanced: 43 each, one leftover
  # Same config, same seeds: the same manifest, bit for bit.
  code, _, err = run(capsys, "run", config, "--output", tmp_path / "again", "--no-progress")
  assert code == 0, err
  first = pruning.Manifest.read_parquet(out_dir / "manifest.parquet").table
  second = pruning.Manifest.read_parquet(tmp_path / "again" / "manifest.parquet").table
  assert first.equals(second)
  # The same command again finds the finished run: nothing to do, nothing touched.
  before = (out_dir / "report.json").read_bytes()
  code, out, err = run(capsys, "run", config, "--output", out_dir)
  assert code == 0 and "nothing to do" in out + err
  assert (out_dir / "report.json").read_bytes() == before
  # Another config into the same folder is refused.
  code, _, err = run(capsys, "run", config, "--output", out_dir, "--model", "mlp")
  assert code == 2 and "--overwrite" in err
  assert (out_dir / "report.json").read_bytes() == before


@pytest.fixture
def tiny_manifest(tmp_path_factory, capsys):
  folder = tmp_path_factory.mktemp("tiny")
  x, y = small_images()
  data = write_npz(folder / "d.npz", x=x, y=y, x_test=x[:12], y_test=y[:12])
  manifest = folder / "m.parquet"
  code, _, err = run(
    capsys,
    "score",
    "--data",
    f"npz:{data}",
    "--model",
    "linear",
    "--epochs",
    "1",
    "--seeds",
    "1",
    "--out",
    manifest,
    "--no-progress",
  )
  assert code == 0, err
  return data, manifest


def bad_cases(tmp, data, manifest):
  single = write_npz(tmp / "single.npz", x=np.ones((5, 2)), y=np.zeros(5, int))
  no_y = write_npz(tmp / "noy.npz", x=np.ones((5, 2)))
  negative = write_npz(tmp / "neg.npz", x=np.ones((4, 2)), y=np.array([0, 1, -2, 1]))
  floats = write_npz(tmp / "float.npz", x=np.ones((4, 2)), y=np.array([0, 1, 0.5, 1]))
  existing = tmp / "existing.parquet"
  existing.write_text("keep me")
  return [
    (["score", "--data", "imagenet", "--out", tmp / "o.parquet"], "unknown dataset spec"),
    (["score", "--data", f"npz:{tmp / 'missing.npz'}", "--out", tmp / "o.parquet"], "no such file"),
    (["score", "--data", f"npz:{no_y}", "--out", tmp / "o.parquet"], "no array 'y'"),
    (["score", "--data", f"npz:{negative}", "--out", tmp / "o.parquet"], "negative label"),
    (["score", "--data", f"npz:{floats}", "--out", tmp / "o.parquet"], "whole numbers"),
    (["score", "--data", f"npz:{single}", "--out", tmp / "o.parquet"], "single class"),
    (["score", "--data", "digits", "--score", "grnd", "--out", tmp / "o.parquet"], "unknown score"),
    (["score", "--data", "digits", "--out", existing], "already exists"),
    (["select", manifest, "--keep", "1.5", "--out", tmp / "s.parquet"], "--keep"),
    (["select", manifest, "--keep", "0", "--out", tmp / "s.parquet"], "--keep"),
    (["select", manifest, "--keep", "100000", "--out", tmp / "s.parquet"], "more than the 60"),
    (["select", manifest, "--keep", "0.5", "--score", "vog", "--out", tmp / "s.parquet"], "no score 'vog'"),
    (["select", manifest, "--keep", "0.5", "--out", existing], "already exists"),
    (["select", tmp / "missing.parquet", "--keep", "0.5", "--out", tmp / "s.parquet"], "no manifest"),
    (["export", manifest, "--data", "digits", "--out", tmp / "e.npz"], "fingerprint"),
    (["train", "--data", "digits", "--subset", manifest], "fingerprint"),
    (["export", manifest, "--data", f"npz:{data}", "--format", "xlsx", "--out", tmp / "e.xlsx"], "export format"),
    (["run", tmp / "missing.yaml"], "no config file"),
  ], existing


def test_bad_inputs_exit_2_with_one_line(tiny_manifest, tmp_path, capsys):
  data, manifest = tiny_manifest
  cases, existing = bad_cases(tmp_path, data, manifest)
  for argv, message in cases:
    code, out, err = run(capsys, *argv, *(["--no-progress"] if argv[0] in ("score", "train") else []))
    assert code == 2, (argv, err)
    lines = [line for line in err.splitlines() if line.startswith("pruning: error:")]
    assert len(lines) == 1 and message in lines[0], (argv, err)
    assert "Traceback" not in err
  assert existing.read_text() == "keep me"
  assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "s.parquet").exists()


@pytest.mark.slow
def test_console_script_help_explains_every_option(run_cli):
  from pruning.cli import build_parser

  commands = build_parser()._subparsers._group_actions[0].choices
  for name, parser in commands.items():
    for action in parser._actions:
      assert action.help, f"`pruning {name}` option {action.option_strings or action.dest} has no help"
  code, out, _ = run_cli("score", "--help")
  assert code == 0 and "--seeds" in out
  code, _, err = run_cli("select", "m.parquet")
  assert code == 2 and "--keep" in err


@pytest.mark.slow
def test_run_on_a_users_npz_with_overrides(tmp_path, capsys):
  x, y = small_images(n=120, shape=(8, 8, 3))
  data = write_npz(tmp_path / "mine.npz", x=(x * 20 + 100).clip(0, 255).astype(np.uint8), y=y)
  config = tmp_path / "c.yaml"
  config.write_text(
    "name: c\nmodel: mlp\ntraining: {epochs: 2}\nproxy: {seeds: 2, epochs: 1}\n"
    "selections: [{name: random, strategy: random, keep: 0.5}]\nretrain: {seeds: 1}\n"
  )
  code, _, err = run(capsys, "run", config, "--data", f"npz:{data}", "--output", tmp_path / "r1", "--no-progress")
  assert code == 2 and "--holdout 0.2" in err
  code, out, err = run(
    capsys,
    "run",
    config,
    "--data",
    f"npz:{data}",
    "--holdout",
    "0.25",
    "--model",
    "cnn",
    "--output",
    tmp_path / "r2",
    "--no-progress",
  )
  assert code == 0, err
  manifest = pruning.Manifest.read_parquet(tmp_path / "r2" / "manifest.parquet")
  assert len(manifest) == 90 and manifest.provenance["model"]["name"] == "cnn"


def test_same_config_and_seeds_give_byte_identical_manifests(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
  paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
  for path in paths:
    code, _, err = run(
      capsys,
      "score",
      "--data",
      "digits",
      "--model",
      "mlp",
      "--model-option",
      "hidden=[32]",
      "--epochs",
      "2",
      "--seeds",
      "0,5",
      "--score",
      "el2n",
      "--score",
      "margin@1",
      "--out",
      path,
      "--no-progress",
    )
    assert code == 0, err
  assert paths[0].read_bytes() == paths[1].read_bytes()


def test_study_transforms_and_class_rules_from_the_cli(tmp_path, capsys):
  manifest = tmp_path / "m.parquet"
  code, out, err = run(
    capsys,
    "score",
    "--data",
    "digits",
    "--validation",
    "0.2",
    "--long-tail",
    "10",
    "--label-noise",
    "0.1",
    "--model",
    "linear",
    "--epochs",
    "2",
    "--learning-rate",
    "0.01",
    "--seeds",
    "2",
    "--score",
    "aum",
    "--out",
    manifest,
    "--no-progress",
  )
  assert code == 0, err
  table = pruning.Manifest.read_parquet(manifest).table
  assert table["is_noisy"].dtype == bool and table["is_noisy"].mean() == pytest.approx(0.1, abs=0.002)
  subset = tmp_path / "s.parquet"
  code, out, err = run(
    capsys,
    "select",
    manifest,
    "--keep",
    "0.3",
    "--strategy",
    "ccs",
    "--beta",
    "0.05",
    "--class-rule",
    "drop",
    "--min-per-class",
    "5",
    "--out",
    subset,
  )
  assert code == 0, err
  kept = pruning.Manifest.read_parquet(subset).selection["kept_per_class"]
  assert sum(kept) == round(0.3 * len(table)) and min(kept) >= 5
  # `drop` on a manifest scored without a validation split: one line naming the fix.
  plain = tmp_path / "plain.parquet"
  assert (
    run(
      capsys,
      "score",
      "--data",
      "digits",
      "--model",
      "linear",
      "--epochs",
      "1",
      "--seeds",
      "1",
      "--out",
      plain,
      "--no-progress",
    )[0]
    == 0
  )
  code, out, err = run(
    capsys, "select", plain, "--keep", "0.3", "--class-rule", "drop", "--out", tmp_path / "x.parquet"
  )
  assert code == 2 and "--validation 0.1" in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "x.parquet").exists()


@pytest.mark.slow
def test_from_manifest_reproduces_score_and_run_bit_for_bit(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
  first = tmp_path / "m.parquet"
  code, _, err = run(
    capsys,
    "score",
    "--data",
    "digits",
    "--validation",
    "0.1",
    "--label-noise",
    "0.05",
    "--model",
    "linear",
    "--epochs",
    "2",
    "--seeds",
    "0,3",
    "--score",
    "el2n",
    "--score",
    "margin@1",
    "--out",
    first,
    "--no-progress",
  )
  assert code == 0, err
  again = tmp_path / "again.parquet"
  code, _, err = run(capsys, "score", "--from-manifest", first, "--out", again, "--no-progress")
  assert code == 0, err
  assert first.read_bytes() == again.read_bytes()
  config = tmp_path / "tiny.yaml"
  config.write_text(
    "name: tiny\ndataset: digits\nmodel: linear\ntraining: {epochs: 1, batch_size: 128}\n"
    "proxy: {seeds: [1, 2]}\nscores: [el2n]\n"
    "selections:\n  - {name: hard, score: el2n, keep: 0.3}\nretrain: {seeds: 1}\n"
  )
  assert run(capsys, "run", config, "--output", tmp_path / "a", "--no-progress")[0] == 0
  code, _, err = run(
    capsys, "run", "--from-manifest", tmp_path / "a" / "manifest.parquet", "--output", tmp_path / "b", "--no-progress"
  )
  assert code == 0, err
  for name in ("manifest.parquet", "subsets/hard.parquet"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
  code, _, err = run(capsys, "run", config, "--from-manifest", first)
  assert code == 2 and "drop the config file" in err
  code, _, err = run(capsys, "score", "--out", tmp_path / "x.parquet")
  assert code == 2 and "--data" in err


def test_list_describes_every_strategy_and_class_rule_in_aligned_columns(capsys):
  from pruning.selection import CLASS_RULES, STRATEGIES

  assert main(["list"]) == 0
  out = capsys.readouterr().out
  sections = out.split("\n", 1)[1]
  for name in (*STRATEGIES, *CLASS_RULES):
    assert re.search(rf"^  {name} +\S", out, re.M), name
  for block in sections.split(":\n"):
    starts = {len(m.group(1)) for m in re.finditer(r"^(  \S+ +)\S", block, re.M)}
    assert len(starts) <= 1, block  # one column per table


def test_cli_defaults_are_the_config_dataclasses_defaults():
  from pruning.cli import build_parser
  from pruning.config import ProxyConfig, RetrainConfig, SelectionConfig
  from pruning.training import TrainConfig

  parser = build_parser()
  score = parser.parse_args(["score", "--data", "digits", "--out", "m.parquet"])
  train = parser.parse_args(["train", "--data", "digits"])
  select = parser.parse_args(["select", "m.parquet", "--keep", "0.5", "--out", "s.parquet"])
  assert (score.epochs, int(score.seeds)) == (ProxyConfig.epochs, len(ProxyConfig.seeds))
  assert (train.epochs, int(train.seeds)) == (TrainConfig.epochs, len(RetrainConfig.seeds))
  for args in (score, train):
    assert (args.batch_size, args.optimizer, args.learning_rate) == (
      TrainConfig.batch_size,
      TrainConfig.optimizer,
      TrainConfig.learning_rate,
    )
  assert (select.class_rule, select.strategy) == (SelectionConfig.class_rule, SelectionConfig.strategy)
  # and the quick start states those same defaults
  quick = pruning.load_config(Path(__file__).resolve().parent.parent / "pipelines" / "quickstart.yaml")
  assert (quick.training.epochs, quick.training.batch_size, quick.proxy.epochs) == (
    TrainConfig.epochs,
    TrainConfig.batch_size,
    ProxyConfig.epochs,
  )


def test_version_no_abbreviated_flags_and_the_nearest_flag_suggested(capsys):
  from pruning import __version__
  from pruning.cli import main

  assert main(["--version"]) == 0
  assert capsys.readouterr().out.strip() == f"pruning {__version__}"
  for typed, meant in (("--scor", "--score"), ("--socre", "--score")):
    assert main(["score", "--data", "digits", typed, "el2n", "--out", "x.parquet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"unrecognized arguments: {typed}" in err and f"did you mean {meant}?" in err


@pytest.mark.parametrize(
  ("argv", "config"),
  [
    (["score"], "pruning.config.DataConfig"),
    (["score"], "pruning.training.TrainConfig"),
    (["score"], "pruning.config.ProxyConfig"),
    (["select", "m.parquet", "--keep", "0.5", "--out", "s.parquet"], "pruning.selection.SelectionRule"),
    (["flag", "m.parquet", "--out", "f.parquet"], "pruning.flagging.FlagOptions"),
    (["train", "--data", "digits", "--out", "r"], "pruning.retraining.RemedyOptions"),
  ],
)
def test_every_option_flag_is_its_config_field(argv, config):
  """One source per option: each field declared with a flag becomes that flag, its default the field's."""
  import dataclasses
  import importlib

  from pruning.cli.arguments import build_parser
  from pruning.runtime.fields import dest_of

  module, name = config.rsplit(".", 1)
  cls = getattr(importlib.import_module(module), name)
  args = build_parser().parse_args(argv)
  flagged = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
  assert flagged
  for field in flagged:
    assert getattr(args, dest_of(field)) == field.default, field.name
