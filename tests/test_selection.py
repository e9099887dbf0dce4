"""Selection invariants: exact counts, quotas, caps and overflow, determinism, no duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruning import Manifest, UserError, select
from pruning.selection import parse_keep, resolve_keep
from pruning.selection.class_quotas import balanced_quotas, proportional_quotas


def toy_manifest(labels, scores, harder="higher"):
  n = len(labels)
  table = pd.DataFrame(
    {
      "example_id": pd.array([f"e{i}" for i in range(n)], dtype="string"),
      "index": np.arange(n, dtype=np.int64),
      "label": np.asarray(labels, np.int64),
      "split": pd.array(["train"] * n, dtype="string"),
      "s": np.asarray(scores, np.float64),
      "s_std": np.zeros(n),
      "s_seed0": np.asarray(scores, np.float32),
    }
  )
  provenance = {
    "format": "pruning.manifest/1",
    "dataset": {"spec": "toy", "fingerprint": "0" * 64},
    "scores": {"s": {"harder": harder, "seeds": [0], "epoch": 1}},
  }
  return Manifest(table=table, provenance=provenance)


@pytest.fixture
def imbalanced():
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 1, 2, 3], [500, 200, 40, 5])
  return toy_manifest(labels, rng.normal(size=len(labels)))


def test_global_hardest_and_easiest_are_top_and_bottom_k(imbalanced):
  scores = imbalanced.table["s"].to_numpy()
  hardest = select(imbalanced, keep=100, class_rule="global", strategy="hardest", score="s")
  assert set(hardest.table["index"]) == set(np.argsort(-scores)[:100])
  easiest = select(imbalanced, keep=0.1, class_rule="global", strategy="easiest", score="s")
  assert len(easiest) == 75  # 74.5 rounds half up
  assert set(easiest.table["index"]) == set(np.argsort(scores)[: len(easiest)])


def test_lower_is_harder_scores_are_turned(imbalanced):
  table = imbalanced.table
  flipped = toy_manifest(table["label"], -table["s"], harder="lower")
  a = select(imbalanced, keep=50, class_rule="global", strategy="hardest", score="s")
  b = select(flipped, keep=50, class_rule="global", strategy="hardest", score="s")
  assert list(a.table["index"]) == list(b.table["index"])


@pytest.mark.parametrize("strategy", ["hardest", "easiest", "random"])
@pytest.mark.parametrize("keep", [0.3, 371, 1.0])
def test_proportional_keeps_the_same_fraction_per_class(imbalanced, strategy, keep):
  subset = select(imbalanced, keep=keep, strategy=strategy, class_rule="proportional", score="s", seed=3)
  k = resolve_keep(keep, len(imbalanced))
  assert len(subset) == k and subset.table["example_id"].is_unique
  counts = np.bincount(subset.table["label"], minlength=4)
  sizes = np.array([500, 200, 40, 5])
  assert np.all(np.abs(counts - k * sizes / sizes.sum()) < 1.0)
  # Within each class the strategy's preferred examples are the ones kept.
  if strategy == "hardest":
    table = imbalanced.table
    for c in range(4):
      kept = set(subset.table.loc[subset.table["label"] == c, "index"])
      members = table[table["label"] == c]
      top = set(members.nlargest(counts[c], "s")["index"])
      assert kept == top


def test_balanced_water_fills_with_caps_and_overflow(imbalanced):
  subset = select(imbalanced, keep=200, strategy="hardest", class_rule="balanced", score="s")
  counts = np.bincount(subset.table["label"], minlength=4)
  # 200 / 4 = 50 each; class 3 has only 5, so 45 pass on: 195 / 3 = 65 each; class 2 caps at 40,
  # 25 pass on: 155 / 2 = 77.5 -> 78 and 77 (the lower label gets the leftover unit).
  assert counts.tolist() == [78, 77, 40, 5]
  assert balanced_quotas(np.array([500, 200, 40, 5]), 745).tolist() == [500, 200, 40, 5]
  with pytest.raises(UserError, match="at least 4"):
    select(imbalanced, keep=3, strategy="random", class_rule="balanced")


def test_proportional_quota_rounding_is_exact():
  counts = np.array([3, 3, 3])
  assert proportional_quotas(counts, 4).tolist() == [2, 1, 1]
  assert proportional_quotas(np.array([7, 0, 2]), 5).sum() == 5


def test_random_is_deterministic_given_a_seed(imbalanced):
  first = select(imbalanced, keep=0.5, strategy="random", class_rule="proportional", seed=7)
  again = select(imbalanced, keep=0.5, strategy="random", class_rule="proportional", seed=7)
  other = select(imbalanced, keep=0.5, strategy="random", class_rule="proportional", seed=8)
  assert list(first.table["example_id"]) == list(again.table["example_id"])
  assert list(first.table["example_id"]) != list(other.table["example_id"])
  assert first.selection["seed"] == 7 and first.selection["kept"] == len(first)


def test_ties_break_by_index():
  subset = select(
    toy_manifest([0, 1, 0, 1, 0, 1], [1.0] * 6), keep=3, class_rule="global", strategy="hardest", score="s"
  )
  assert list(subset.table["index"]) == [0, 1, 2]


@pytest.mark.parametrize("keep", [0, -0.5, 1.5, "abc", float("nan"), 746])
def test_bad_keep_values(imbalanced, keep):
  with pytest.raises(UserError, match="--keep"):
    select(imbalanced, keep=keep, strategy="random")


def test_keep_parsing():
  assert parse_keep("50%") == 0.5 and parse_keep("1") == 1.0 and parse_keep(700) == 700
  assert parse_keep("0.25") == 0.25 and resolve_keep(1, 9) == 9


def test_nan_scores_and_missing_score_are_refused(imbalanced):
  table = imbalanced.table.copy()
  table.loc[3, "s"] = np.nan
  with pytest.raises(UserError, match="NaN"):
    select(Manifest(table, imbalanced.provenance), keep=10, strategy="hardest", score="s")
  with pytest.raises(UserError, match="no score 'el2n'"):
    select(imbalanced, keep=10, strategy="hardest", score="el2n")
  with pytest.raises(UserError, match="did you mean 'hardest'"):
    select(imbalanced, keep=10, strategy="hardst", score="s")


def test_offset_drops_the_hardest_beta_first(imbalanced):
  scores = imbalanced.table["s"].to_numpy()
  subset = select(imbalanced, keep=100, class_rule="global", strategy="offset", beta=0.1, score="s")
  hardest_first = np.argsort(-scores, kind="stable")
  dropped = 75  # 74.5 rounds half up, as --keep does
  assert set(subset.table["index"]) == set(hardest_first[dropped : dropped + 100])
  assert subset.selection["beta"] == 0.1
  # When a class quota needs them, dropped examples come back last.
  every = select(imbalanced, keep=1.0, strategy="offset", beta=0.5, class_rule="proportional", score="s")
  assert len(every) == len(scores)
  with pytest.raises(UserError, match="beta"):
    select(imbalanced, keep=10, strategy="offset", beta=1.0, score="s")


def test_probabilistic_prefers_hard_examples_and_is_seeded():
  labels = np.zeros(2000, int)
  labels[1000:] = 1
  scores = np.tile(np.r_[np.zeros(500), np.full(500, 3.0)], 2)  # half easy, half hard, per class
  manifest = toy_manifest(labels, scores)
  subset = select(
    manifest, keep=400, strategy="probabilistic", temperature=1.0, class_rule="proportional", score="s", seed=1
  )
  kept_hard = (subset.table["s"] == 3.0).mean()
  # Weights e^3 : 1 give P(hard) ~ 0.95 for the first draws; over 400 of 2000 it stays well above 0.9.
  assert kept_hard > 0.9 and np.bincount(subset.table["label"]).tolist() == [200, 200]
  again = select(manifest, keep=400, strategy="probabilistic", class_rule="proportional", score="s", seed=1)
  assert list(again.table["index"]) == list(subset.table["index"])
  hot = select(manifest, keep=400, class_rule="global", strategy="probabilistic", temperature=1e6, score="s", seed=1)
  assert 0.35 < (hot.table["s"] == 3.0).mean() < 0.65  # a huge temperature is uniform sampling
  linear = select(
    manifest, keep=400, class_rule="global", strategy="probabilistic", weighting="linear", score="s", seed=1
  )
  assert (linear.table["s"] == 3.0).all()  # linear weights give the easiest (minimum) zero weight
  with pytest.raises(UserError, match="temperature"):
    select(manifest, keep=10, strategy="probabilistic", temperature=0, score="s")
