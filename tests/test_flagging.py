"""Flagging wrong labels: confident learning against a per-example loop and
cleanlab's own counts, threshold samples, the decision's quality on noisy
digits, `--drop-suspects`, the command and its bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pruning
from pruning.cli import main
from pruning.config import parse_config
from pruning.flagging import FlagOptions, confident, flag_label_issues
from pruning.selection import resolve_keep


def random_probabilities(n=300, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, size=n)
  logits = rng.normal(size=(n, classes)) + 2.5 * np.eye(classes)[labels]
  noisy = labels.copy()
  flip = rng.random(n) < 0.2
  noisy[flip] = (labels[flip] + 1) % classes
  p = np.exp(logits)
  return noisy, p / p.sum(axis=1, keepdims=True)


def loop_confident_joint(labels, probabilities):
  """The paper's definition, one example at a time."""
  classes = probabilities.shape[1]
  t = [np.mean([probabilities[i, j] for i in range(len(labels)) if labels[i] == j]) for j in range(classes)]
  joint = np.zeros((classes, classes), int)
  for i in range(len(labels)):
    above = [j for j in range(classes) if probabilities[i, j] >= t[j]]
    if above:
      joint[labels[i], max(above, key=lambda j: probabilities[i, j])] += 1
  return joint


def test_the_confident_joint_matches_a_per_example_loop_and_its_calibration_keeps_class_sizes():
  labels, probabilities = random_probabilities()
  joint = confident.confident_joint(labels, probabilities)
  assert np.array_equal(joint, loop_confident_joint(labels, probabilities))
  calibrated = confident.calibrated_joint(labels, probabilities)
  np.testing.assert_allclose(calibrated.sum(axis=1), np.bincount(labels))
  np.testing.assert_allclose(confident.estimated_issues(labels, probabilities), calibrated.sum(1) - np.diag(calibrated))


def test_the_confident_joint_and_flags_agree_with_cleanlab():
  cleanlab = pytest.importorskip("cleanlab")
  from cleanlab.count import compute_confident_joint
  from cleanlab.filter import find_label_issues

  labels, probabilities = random_probabilities(n=600, seed=3)
  assert np.array_equal(
    compute_confident_joint(labels, probabilities, calibrate=False), confident.confident_joint(labels, probabilities)
  )
  ours, theirs = confident.prune_by_noise_rate(labels, probabilities), find_label_issues(labels, probabilities)
  assert cleanlab.__version__ and (ours & theirs).sum() / (ours | theirs).sum() > 0.9


def test_too_few_examples_in_a_class_is_one_line():
  labels, probabilities = random_probabilities()
  labels[labels == 3] = 2
  labels[:3] = 3
  with pytest.raises(pruning.UserError, match="class 3 has 3 examples, too few"):
    confident.estimated_issues(labels, probabilities)


@pytest.fixture(scope="module")
def noisy_digits():
  config = parse_config(
    {
      "name": "flag",
      "dataset": {"spec": "digits", "label_noise": 0.2},
      "model": "mlp",
      "model_options": {"hidden": [64]},
      "proxy": {"seeds": 2, "epochs": 5},
      "scores": ["el2n", "aum"],
    }
  )
  data = pruning.load_dataset(**config.dataset.options())
  manifest = pruning.score_dataset(data, config.proxy_spec(), pipeline_config=config.to_dict(), progress=False)
  return data, manifest


def f1(flags, truth):
  tp = (flags & truth).sum()
  precision, recall = tp / max(flags.sum(), 1), tp / truth.sum()
  return 2 * precision * recall / max(precision + recall, 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ranked", "confident_learning", "aum_threshold"])
def test_every_method_finds_the_flipped_digits(noisy_digits, method):
  data, manifest = noisy_digits
  flagged = flag_label_issues(manifest, data, options=FlagOptions(method=method, folds=3), progress=False)
  table = flagged.table.sort_values("index")
  truth = data.train.is_noisy
  assert f1(table["is_suspect"].to_numpy(), truth) > 0.85
  record = flagged.provenance["flagging"]
  assert record["method"] == method and record["flagged"] == int(table["is_suspect"].sum())
  if method != "aum_threshold":  # the estimate of the noise is near the truth (287 of 1437)
    assert abs(sum(record["estimated_per_class"]) - truth.sum()) < 0.15 * truth.sum()
  if method == "ranked":  # the likely label of a flagged example is mostly its true one
    suspects = table[table["is_suspect"] & table["is_noisy"]]
    assert (suspects["likely_label"] == suspects["clean_label"]).mean() > 0.8


@pytest.mark.slow
def test_threshold_samples_sit_below_clean_examples(noisy_digits):
  from pruning.flagging.training import aum_with_threshold_samples

  data, manifest = noisy_digits
  spec = pruning.ModelSpec.from_provenance(manifest.provenance)
  aum, threshold_aum = aum_with_threshold_samples(data, spec, progress=False)
  assert not np.isnan(aum).any() and len(threshold_aum) == 2 * (len(aum) // 11)
  clean = ~data.train.is_noisy
  assert np.median(threshold_aum) < np.percentile(aum[clean], 5)


@pytest.mark.slow
def test_flag_then_select_without_suspects_from_the_command_line(noisy_digits, tmp_path, capsys):
  data, manifest = noisy_digits
  manifest.to_parquet(tmp_path / "m.parquet")
  common = ["--data", "digits", "--label-noise", "0.2"]
  assert (
    main(
      [
        "flag",
        str(tmp_path / "m.parquet"),
        *common,
        "--folds",
        "3",
        "--out",
        str(tmp_path / "f.parquet"),
        "--suspects",
        str(tmp_path / "suspects.csv"),
        "--no-progress",
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert "examples flagged (confident_learning)" in out and "estimated wrong per class" in out
  flagged = pruning.Manifest.read_parquet(tmp_path / "f.parquet")
  suspects = pd.read_csv(tmp_path / "suspects.csv")
  assert set(suspects["example_id"]) == set(flagged.table.loc[flagged.table["is_suspect"], "example_id"])
  assert {"given_label", "likely_label", "given_class", "likely_class", "evidence"} <= set(suspects.columns)
  assert suspects["evidence"].is_monotonic_decreasing  # confident learning's margin, most suspicious first
  assert (
    main(
      [
        "select",
        str(tmp_path / "f.parquet"),
        "--score",
        "el2n",
        "--keep",
        "0.5",
        "--drop-suspects",
        "--out",
        str(tmp_path / "s.parquet"),
      ]
    )
    == 0
  )
  subset = pruning.Manifest.read_parquet(tmp_path / "s.parquet")
  assert not subset.table["is_suspect"].any()
  assert (
    len(subset) == resolve_keep(0.5, len(flagged))
    and subset.selection["suspects_dropped"] == flagged.table["is_suspect"].sum()
  )
  # without flags, --drop-suspects says what to do
  assert (
    main(
      [
        "select",
        str(tmp_path / "m.parquet"),
        "--score",
        "el2n",
        "--keep",
        "0.5",
        "--drop-suspects",
        "--out",
        str(tmp_path / "x.parquet"),
      ]
    )
    == 2
  )
  assert "flag it first" in capsys.readouterr().err


@pytest.mark.parametrize(
  ("argv", "match"),
  [
    (["--percentile", "100"], "strictly between 0 and 100"),
    (["--folds", "1"], "from 2 to 20"),
    (["--method", "ranked", "--score", "aum"], "has no score 'aum'"),
  ],
)
def test_bad_flag_options_are_one_line(linear_manifest, tmp_path, capsys, argv, match):
  linear_manifest.to_parquet(tmp_path / "m.parquet")
  assert (
    main(["flag", str(tmp_path / "m.parquet"), "--data", "digits", "--out", str(tmp_path / "f.parquet"), *argv]) == 2
  )
  err = capsys.readouterr().err
  assert match in err and err.count("\n") == 1


def test_a_manifest_that_records_no_proxy_training_is_one_line(linear_manifest, digits):
  provenance = {key: value for key, value in linear_manifest.provenance.items() if key != "training"}
  with pytest.raises(pruning.UserError, match="records no proxy training this version can read"):
    flag_label_issues(pruning.Manifest(linear_manifest.table, provenance), digits, progress=False)


def test_a_pipeline_that_drops_suspects_needs_a_flag_section():
  with pytest.raises(pruning.UserError, match="add `flag: {method: confident_learning}`"):
    parse_config({"name": "x", "selections": [{"name": "a", "score": "el2n", "keep": 0.5, "drop_suspects": True}]})
  config = parse_config(
    {
      "name": "x",
      "flag": {"method": "aum_threshold", "per_class": True},
      "selections": [{"name": "a", "score": "el2n", "keep": 0.5, "drop_suspects": True}],
    }
  )
  assert config.flag.per_class and config.flag.method == "aum_threshold"


def test_pair_noise_flips_each_class_to_the_next():
  data = pruning.load_dataset("digits")
  from pruning.data.transforms import label_noise

  noisy = label_noise(data, rate=0.3, seed=1, kind="pairs")
  flipped = noisy.train.is_noisy
  assert np.array_equal(noisy.train.y[flipped], (noisy.train.clean_y[flipped] + 1) % 10)
  assert noisy.transforms[-1]["kind"] == "pairs"


@pytest.mark.slow
def test_a_pipeline_flags_and_its_selection_drops_the_suspects(tmp_path):
  from pruning.jobs import run_pipeline

  config = parse_config(
    {
      "name": "flag_run",
      "dataset": {"spec": "digits", "label_noise": 0.2},
      "model": "linear",
      "training": {"epochs": 2, "batch_size": 128, "learning_rate": 0.01},
      "proxy": {"seeds": 2, "epochs": 3},
      "scores": ["el2n"],
      "flag": {"method": "confident_learning", "folds": 3},
      "selections": [
        {"name": "clean_hardest", "score": "el2n", "keep": 0.5, "drop_suspects": True},
        {"name": "hardest", "score": "el2n", "keep": 0.5},
      ],
      "retrain": {"seeds": 1, "include_full": False},
    }
  )
  result = run_pipeline(config, output_dir=tmp_path, progress=False, log=lambda *_: None)
  manifest = pruning.Manifest.read_parquet(tmp_path / "manifest.parquet")
  assert manifest.provenance["flagging"]["method"] == "confident_learning"
  clean, plain = result.subsets["clean_hardest"].table, result.subsets["hardest"].table
  assert not clean["is_suspect"].any() and plain["is_suspect"].any()
  assert clean["is_noisy"].mean() < 0.5 * plain["is_noisy"].mean()


def test_pair_noise_from_the_command_line_is_recorded_and_reproduced(tmp_path, capsys):
  data = ["--data", "digits", "--label-noise", "0.2", "--label-noise-kind", "pairs"]
  assert (
    main(
      [
        "score",
        *data,
        "--model",
        "linear",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--no-progress",
        "--out",
        str(tmp_path / "m.parquet"),
      ]
    )
    == 0
  )
  manifest = pruning.Manifest.read_parquet(tmp_path / "m.parquet")
  assert manifest.provenance["dataset"]["transforms"][-1]["kind"] == "pairs"
  table = manifest.table[manifest.table["is_noisy"]]
  assert np.array_equal(table["label"], (table["clean_label"] + 1) % 10)
  # export without the flags: the recorded transforms (pair noise included) reproduce the data
  assert main(["select", str(tmp_path / "m.parquet"), "--keep", "0.5", "--out", str(tmp_path / "s.parquet")]) == 0
  assert (
    main(
      ["export", str(tmp_path / "s.parquet"), "--data", "digits", "--format", "ids", "--out", str(tmp_path / "ids.txt")]
    )
    == 0
  )
  assert "--label-noise-kind pairs" in capsys.readouterr().err
  with pytest.raises(pruning.UserError, match="label_noise_kind"):
    parse_config({"name": "x", "dataset": {"spec": "digits", "label_noise": 0.1, "label_noise_kind": "flip"}})


@pytest.mark.slow
def test_split_all_flags_wrong_test_labels_too(tmp_path, capsys):
  """--split all: the test split's labels are examined by confident learning on the out-of-fold
  proxies' average (none saw the test split); flipped test labels are found, listed with the
  training suspects, and the decision equals cleanlab's on the same probabilities."""
  from pruning.cli import main
  from pruning.flagging import test_suspects
  from pruning.flagging.training import out_of_fold_probabilities

  digits = pruning.load_dataset("digits")
  rng = np.random.default_rng(0)
  y_test = digits.test.y.copy()
  flipped = rng.random(len(y_test)) < 0.15
  y_test[flipped] = (y_test[flipped] + rng.integers(1, 10, flipped.sum())) % 10
  np.savez(tmp_path / "d.npz", x=digits.train.x, y=digits.train.y, x_test=digits.test.x, y_test=y_test)
  args = ["--model", "mlp", "--model-option", "hidden=[64]", "--epochs", "5", "--seeds", "2", "--no-progress"]
  m = str(tmp_path / "m.parquet")
  assert main(["score", "--data", f"npz:{tmp_path / 'd.npz'}", *args, "--out", m]) == 0
  flag = ["flag", m, "--folds", "3", "--split", "all", "--out", str(tmp_path / "f.parquet"), "--no-progress"]
  assert main([*flag, "--suspects", str(tmp_path / "s.csv")]) == 0
  assert "test split: " in capsys.readouterr().out
  record = pruning.Manifest.read_parquet(tmp_path / "f.parquet").provenance["flagging"]["test"]
  data = pruning.load_dataset(f"npz:{tmp_path / 'd.npz'}")
  found = np.isin(data.test.ids.astype(str), [s["example_id"] for s in record["suspects"]])
  assert (found & flipped).sum() / flipped.sum() > 0.7 and (found & flipped).sum() / found.sum() > 0.6
  table = pd.read_csv(tmp_path / "s.csv")
  assert sorted(table.loc[table["split"] == "test", "example_id"].astype(str)) == sorted(
    s["example_id"] for s in record["suspects"]
  )
  cleanlab = pytest.importorskip("cleanlab.filter")
  manifest = pruning.Manifest.read_parquet(m)
  from pruning.flagging import recorded_proxy_spec

  _, probabilities = out_of_fold_probabilities(data, recorded_proxy_spec(manifest), folds=3, progress=False, test=True)
  ours = np.isin(
    data.test.ids.astype(str), [s["example_id"] for s in test_suspects(data.test, probabilities, 10)["suspects"]]
  )
  theirs = cleanlab.find_label_issues(data.test.y, probabilities, filter_by="prune_by_noise_rate")
  assert (ours & theirs).sum() / (ours | theirs).sum() > 0.9
