"""Study pipelines: a sweep of fractions x rules x seeds into one tidy table,
noise detection against `is_noisy`, and every study YAML in `pipelines/`
running end to end at a CI-friendly size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_evaluation import rank_auroc

import pruning
from pruning.config import load_config, parse_config
from pruning.jobs import run_pipeline
from pruning.report import noise_detection

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
  config = parse_config(
    {
      "name": "tiny_study",
      "dataset": {"spec": "digits", "validation": 0.2, "label_noise": 0.1},
      "model": "linear",
      "training": {"epochs": 2, "batch_size": 128, "learning_rate": 0.01},
      "proxy": {"seeds": 2, "epochs": 1},
      "scores": ["el2n", "aum"],
      "selections": [
        {"name": "el2n_hardest", "score": "el2n", "strategy": "hardest"},
        {"name": "el2n_ccs", "score": "el2n", "strategy": "ccs", "class_rule": "drop", "min_per_class": 3},
      ],
      "sweep": {"keep": [0.2, 0.5]},
      "retrain": {"seeds": 2, "include_full": False},
    }
  )
  return config, run_pipeline(config, output_dir=tmp_path_factory.mktemp("study"), progress=False, log=lambda *_: None)


@pytest.mark.slow
def test_sweep_writes_one_row_per_retrained_model(sweep_run):
  config, result = sweep_run
  results = pd.read_parquet(result.output_dir / "results.parquet")
  # 2 rules + a random rule per class rule in use (proportional, drop), at 2 fractions, plus the full
  # data; 2 seeds each.
  assert len(results) == (4 * 2 + 1) * 2
  assert sorted(results["rule"].unique()) == ["el2n_ccs", "el2n_hardest", "full", "random_drop", "random_proportional"]
  assert set(results.loc[results["rule"] == "random_drop", "class_rule"]) == {"drop"}
  assert sorted(results["keep"].unique()) == [0.2, 0.5, 1.0]
  for column in (
    "accuracy",
    "balanced_accuracy",
    "worst_class_recall",
    "macro_f1",
    "auroc",
    "auprc",
    "noisy_kept",
    "kept_class_0",
    "recall_class_9",
  ):
    assert column in results, column
  kept_columns = [f"kept_class_{c}" for c in range(10)]
  assert np.array_equal(results[kept_columns].sum(axis=1), results["kept"])
  csv = pd.read_csv(result.output_dir / "results.csv")
  assert np.allclose(csv["accuracy"], results["accuracy"])
  # The subset's recorded noisy fraction is the true one.
  hard = result.subsets["el2n_hardest@0.5"].table
  row = results[results["arm"] == "el2n_hardest@0.5"].iloc[0]
  assert row["noisy_kept"] == pytest.approx(hard["is_noisy"].mean())
  assert (result.output_dir / "pruning_curves.png").stat().st_size > 10_000
  assert (result.output_dir / "kept_per_class.png").is_file()
  assert result.subsets["el2n_ccs@0.2"].selection["class_rule"] == "drop"


@pytest.mark.slow
def test_noise_detection_auroc_by_rank(sweep_run):
  _, result = sweep_run
  table = pd.read_csv(result.output_dir / "noise_detection.csv")
  manifest = result.manifest
  noisy = manifest.table["is_noisy"].to_numpy()
  for row in table.itertuples():
    values = manifest.table[row.score].to_numpy()
    hardness = values if manifest.scores[row.score]["harder"] == "higher" else -values
    assert row.auroc == pytest.approx(rank_auroc(noisy, hardness), abs=1e-9)
  # Both scores find flipped labels far better than chance, even on one-epoch proxies.
  assert table["auroc"].min() > 0.75
  assert noise_detection(pruning.Manifest(manifest.table.drop(columns="is_noisy"), manifest.provenance)).empty


def test_sweep_config_errors():
  base = {"name": "s", "selections": [{"name": "a", "score": "el2n", "keep": 0.5}], "sweep": {"keep": [0.5]}}
  with pytest.raises(pruning.UserError, match="set by `sweep.keep`"):
    parse_config(base)
  with pytest.raises(pruning.UserError, match="no `keep`"):
    parse_config({"name": "s", "selections": [{"name": "a", "score": "el2n"}]})
  with pytest.raises(pruning.UserError, match="repeats"):
    parse_config({"name": "s", "selections": [{"name": "a", "score": "el2n"}], "sweep": {"keep": [0.5, "50%"]}})


def shrink(config):
  """The study at CI size: one seed, few epochs, same rules and sweep (`sweep_run` checks two seeds:
  a CNN's seeds are unrolled, each another copy of its programs to compile)."""
  training = dataclasses.replace(config.training, epochs=min(config.training.epochs, 3))
  vog = any(score.startswith("vog") for score in config.scores)  # a variance needs two checkpoints
  proxy = dataclasses.replace(config.proxy, seeds=config.proxy.seeds[:1], epochs=2 if vog else 1)
  # One retraining seed, each subset for its own epochs (fewer steps than the full data's), one fraction.
  retrain = dataclasses.replace(config.retrain, seeds=config.retrain.seeds[:1], budget="epochs")
  sweep = dataclasses.replace(config.sweep, keep=config.sweep.keep[:1])
  shrunk = dataclasses.replace(config, training=training, proxy=proxy, retrain=retrain, sweep=sweep)
  if config.model == "transformer":  # a smaller encoder on shorter text, one step shape: the same pipeline
    dataset = dataclasses.replace(config.dataset, max_length=16, vocab_size=256)
    options = {**config.model_options, "hidden": 16, "mlp": 32, "layers": 1}
    shrunk = dataclasses.replace(
      shrunk,
      dataset=dataset,
      model_options=options,
      training=dataclasses.replace(training, epochs=1, batch_size=128, bucket_by_length=False),
      # Every arm as many steps as the full data (the studies' own budget): one learning-rate
      # schedule, so one compiled step for all arms rather than one an arm.
      retrain=dataclasses.replace(retrain, budget="steps"),
    )
  return shrunk


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(PIPELINES.glob("study_*.yaml")), ids=lambda p: p.stem)
def test_every_study_runs_from_its_yaml(path, tmp_path):
  config = shrink(load_config(path))
  result = run_pipeline(config, output_dir=tmp_path, progress=False, log=lambda *_: None)
  results = result.results
  assert {"full", "random"} <= set(results["rule"])
  assert len(results) == len(results[["arm", "seed"]].drop_duplicates())
  figure = "pruning_curves.png" if config.sweep.keep else "remedies.png"  # a study of remedies alone: bars
  assert (tmp_path / figure).is_file()
  assert set(results["remedy"]) == set(config.remedies)


@pytest.mark.slow
def test_study_table_holds_mean_and_std_over_seeds(sweep_run):
  from pruning.report import study_table

  _, result = sweep_run
  table = study_table(result.results, "accuracy")
  assert list(table.index)[-1] == "full" and list(table.columns) == [0.2, 0.5, 1.0]
  rows = result.results[(result.results["rule"] == "el2n_hardest") & (result.results["keep"] == 0.5)]
  mean, std = rows["accuracy"].mean(), rows["accuracy"].std(ddof=0)
  assert table.loc["el2n_hardest", 0.5] == f"{mean:.4f} ± {std:.4f}"
