"""Seed stability and score correlations against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_selection import toy_manifest

from pruning.cli import main
from pruning.report import score_correlations, seed_stability


def two_seed_manifest():
  rng = np.random.default_rng(0)
  a = rng.normal(size=100)
  b = a + rng.normal(scale=0.5, size=100)
  manifest = toy_manifest(np.arange(100) % 4, (a + b) / 2)
  manifest.table["s_seed1"] = b.astype(np.float32)
  manifest.table["s_seed0"] = a.astype(np.float32)
  manifest.provenance["scores"]["s"]["seeds"] = [0, 1]
  return manifest, a.astype(np.float32), b.astype(np.float32)


def test_seed_stability_by_hand():
  manifest, a, b = two_seed_manifest()
  row = seed_stability(manifest).iloc[0]
  assert row["seeds"] == 2
  assert row["spearman_mean"] == stats.spearmanr(a, b).statistic
  top_a, top_b = set(np.argsort(-a)[:50]), set(np.argsort(-b)[:50])
  assert row["overlap_50"] == len(top_a & top_b) / len(top_a | top_b)
  identical = toy_manifest(np.arange(100) % 4, a)
  identical.table["s_seed1"] = a
  identical.provenance["scores"]["s"]["seeds"] = [0, 1]
  assert seed_stability(identical).iloc[0]["overlap_30"] == 1.0


def test_correlations_include_input_norm():
  manifest, a, _ = two_seed_manifest()
  table = score_correlations(manifest, input_norm=manifest.table["s"] * 2 + 1)
  assert table.loc["s", "input_norm"] == 1.0


def test_report_command_on_a_real_manifest(linear_manifest, tmp_path, capsys):
  path = linear_manifest.to_parquet(tmp_path / "m.parquet")
  assert main(["report", str(path), "--data", "digits"]) == 0
  out = capsys.readouterr().out
  assert "spearman_mean" in out and "input_norm" in out and "el2n_epoch0" in out


def test_a_selection_well_below_random_is_named_and_a_near_one_is_not():
  import pandas as pd

  from pruning.report import below_random, describe_below_random

  def rows(arm, strategy, keep, accuracy, worst):
    return [
      {
        "arm": arm,
        "strategy": strategy,
        "keep": keep,
        "remedy": "none",
        "seed": s,
        "accuracy": a,
        "worst_class_recall": w,
      }
      for s, (a, w) in enumerate(zip(accuracy, worst))
    ]

  results = pd.DataFrame(
    rows("full", "full", 1.0, [0.80, 0.80], [0.6, 0.6])
    + rows("hard", "hardest", 0.5, [0.60, 0.62], [0.10, 0.12])  # 11.5 points below on accuracy
    + rows("near", "easiest", 0.5, [0.72, 0.715], [0.55, 0.56])  # within 2 points: not named
    + rows("noisy", "hardest", 0.3, [0.50, 0.80], [0.5, 0.5])  # 3 points below, but seeds spread 30 points
    + rows("random", "random", 0.5, [0.72, 0.73], [0.55, 0.57])
    + rows("random30", "random", 0.3, [0.68, 0.68], [0.5, 0.5])
  )
  table = below_random(results)
  assert table[["arm", "metric"]].values.tolist() == [["hard", "accuracy"], ["hard", "worst_class_recall"]]
  assert table["gap"].tolist() == pytest.approx([0.115, 0.45])
  assert table["random_arm"].unique().tolist() == ["random"]
  (line,) = describe_below_random(table)
  assert "hard is well below random" in line and "accuracy 11.5 points" in line and "Sorscher" in line
