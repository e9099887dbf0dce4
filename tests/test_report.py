"""Seed stability and score correlations against direct computations."""

from __future__ import annotations

import numpy as np
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
