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
  table = pd.DataFrame({
      "example_id": pd.array([f"e{i}" for i in range(n)], dtype="string"),
      "index": np.arange(n, dtype=np.int64),
      "label": np.asarray(labels, np.int64),
      "split": pd.array(["train"] * n, dtype="string"),
      "s": np.asarray(scores, np.float64),
      "s_std": np.zeros(n),
      "s_seed0": np.asarray(scores, np.float32),
  })
  provenance = {"format": "pruning.manifest/1", "dataset": {"spec": "toy", "fingerprint": "0" * 64},
                "scores": {"s": {"harder": harder, "seeds": [0], "epoch": 1}}}
  return Manifest(table=table, provenance=provenance)


@pytest.fixture
def imbalanced():
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 1, 2, 3], [500, 200, 40, 5])
  return toy_manifest(labels, rng.normal(size=len(labels)))


def test_global_hardest_and_easiest_are_top_and_bottom_k(imbalanced):
  scores = imbalanced.table["s"].to_numpy()
  hardest = select(imbalanced, keep=100, strategy="hardest", score="s")
  assert set(hardest.table["index"]) == set(np.argsort(-scores)[:100])
  easiest = select(imbalanced, keep=0.1, strategy="easiest", score="s")
  assert len(easiest) == 75  # 74.5 rounds half up
  assert set(easiest.table["index"]) == set(np.argsort(scores)[: len(easiest)])


def test_lower_is_harder_scores_are_turned(imbalanced):
  table = imbalanced.table
  flipped = toy_manifest(table["label"], -table["s"], harder="lower")
  a = select(imbalanced, keep=50, strategy="hardest", score="s")
  b = select(flipped, keep=50, strategy="hardest", score="s")
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
  subset = select(toy_manifest([0, 1, 0, 1, 0, 1], [1.0] * 6), keep=3, strategy="hardest", score="s")
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
