"""Seed stability and agreement between scores, as DataFrames (and `pruning report`).

For each score: the Spearman rank correlation between every pair of seeds
(mean, min), and the overlap of the kept sets between seeds when keeping the
hardest 30%, 50% and 70% (mean Jaccard index over seed pairs). Between
scores: the Spearman correlation of their seed means, plus the input norm, so
that a score that merely tracks ||x|| shows it (Kirsch, 2023, found GraNd at
initialisation correlates with the input norm almost perfectly).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pruning.manifest import Manifest
from pruning.selection import resolve_keep
from pruning.selection.order import smallest
from pruning.selection.strategies import difficulty

KEEP_FRACTIONS = (0.3, 0.5, 0.7)


def _hardest(values: np.ndarray, harder: str, fraction: float) -> set[int]:
  """Rows that `select(strategy="hardest", keep=fraction)` would keep for these values."""
  return set(smallest(-difficulty(values, harder), resolve_keep(fraction, len(values))).tolist())


def seed_stability(manifest: Manifest, *, fractions=KEEP_FRACTIONS) -> pd.DataFrame:
  """One row per score: seeds, Spearman between seeds, kept-set overlap between seeds."""
  from scipy.stats import spearmanr  # here: scipy.stats takes 0.4 s to import, and every command imports this module

  rows = []
  for column, info in manifest.scores.items():
    per_seed = manifest.seed_values(column).astype(np.float64)
    row = {"score": column, "seeds": len(per_seed)}
    pairs = list(itertools.combinations(range(len(per_seed)), 2))
    if pairs:
      rhos = [spearmanr(per_seed[a], per_seed[b]).statistic for a, b in pairs]
      row["spearman_mean"] = float(np.nanmean(rhos))
      row["spearman_min"] = float(np.nanmin(rhos))
      for fraction in fractions:
        kept = [_hardest(v, info["harder"], fraction) for v in per_seed]
        overlaps = [len(kept[a] & kept[b]) / len(kept[a] | kept[b]) for a, b in pairs]
        row[f"overlap_{int(fraction * 100)}"] = float(np.mean(overlaps))
    rows.append(row)
  return pd.DataFrame(rows)


def score_correlations(manifest: Manifest, *, input_norm: np.ndarray | None = None) -> pd.DataFrame:
  """Spearman correlations between the seed means of every score (and `input_norm`)."""
  frame = manifest.table[list(manifest.scores)].astype(np.float64)
  if input_norm is not None:
    frame = frame.assign(input_norm=np.asarray(input_norm, np.float64))
  return frame.corr(method="spearman")


def input_norms(manifest: Manifest, dataset) -> np.ndarray:
  """||x|| of each manifest row's input, normalised as the proxies saw it."""
  from pruning.data.normalization import Normalizer

  manifest.check_dataset(dataset)
  normalizer = Normalizer.from_description(manifest.provenance["normalization"])
  x = normalizer(dataset.train.x[manifest.table["index"].to_numpy()])
  return np.linalg.norm(x.reshape(len(x), -1).astype(np.float64), axis=1)


def noise_detection(manifest: Manifest) -> pd.DataFrame:
  """How well each score finds mislabeled examples: one row per score with the
  AUROC and AUPRC of its difficulty against the manifest's `is_noisy` column
  (a random score gets AUROC 0.5 and AUPRC = the noise rate)."""
  from sklearn import metrics

  if "is_noisy" not in manifest.table:
    return pd.DataFrame(columns=["score", "auroc", "auprc", "noisy", "examples"])
  noisy = manifest.table["is_noisy"].to_numpy(bool)
  rows = []
  for column, info in manifest.scores.items():
    hardness = difficulty(manifest.table[column].to_numpy(), info["harder"])
    both = 0 < noisy.sum() < len(noisy)
    rows.append(
      {
        "score": column,
        "auroc": float(metrics.roc_auc_score(noisy, hardness)) if both else float("nan"),
        "auprc": float(metrics.average_precision_score(noisy, hardness)) if both else float("nan"),
        "noisy": int(noisy.sum()),
        "examples": len(noisy),
      }
    )
  return pd.DataFrame(rows)


def study_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
  """A study's `metric` as a rules x fractions-kept table of "mean ± std" over
  retraining seeds (the full data as its own row), from a tidy results table."""
  stats = results.groupby(["rule", "keep"], sort=False)[metric].agg(["mean", "std"])
  stats["std"] = results.groupby(["rule", "keep"], sort=False)[metric].std(ddof=0)
  cells = stats.apply(lambda row: f"{row['mean']:.4f} ± {row['std']:.4f}", axis=1).unstack("keep")
  order = [r for r in results["rule"].drop_duplicates() if r != "full"] + (
    ["full"] if "full" in set(results["rule"]) else []
  )
  return cells.loc[order, sorted(cells.columns)].fillna("")


# "Well below random": a gap of at least this many points in the metric, and of
# two standard errors of the difference of the two arms' means over seeds.
BELOW_RANDOM_POINTS = {"accuracy": 0.02, "worst_class_recall": 0.05}


def below_random(results: pd.DataFrame) -> pd.DataFrame:
  """The selections of a run that retrained well below a random subset of the
  same size and remedy (the `results` table of `run_pipeline`, one row per
  model): arm, random_arm, keep, metric, arm_value, random_value, gap.

  Hardest-first selection fails with weak proxies and with small or noisy
  data (Sorscher et al., 2022: keep the easiest examples when data is
  scarce); this is what says so after a run.
  """
  rows: list[list] = []
  columns = ["arm", "random_arm", "keep", "metric", "arm_value", "random_value", "gap"]
  if not len(results) or "strategy" not in results:
    return pd.DataFrame(rows, columns=columns)
  selected = results[~results["strategy"].isin(["full", "random"])]
  randoms = results[results["strategy"] == "random"]
  for (arm, keep, remedy), group in selected.groupby(["arm", "keep", "remedy"], sort=False):
    baseline = randoms[(randoms["keep"] == keep) & (randoms["remedy"] == remedy)]
    if not len(baseline):
      continue
    random_arm = baseline["arm"].iloc[0]
    baseline = baseline[baseline["arm"] == random_arm]
    for metric, points in BELOW_RANDOM_POINTS.items():
      ours, theirs = group[metric].to_numpy(float), baseline[metric].to_numpy(float)
      gap = float(theirs.mean() - ours.mean())
      error = float(np.sqrt(ours.var() / len(ours) + theirs.var() / len(theirs)))
      if gap >= points and gap >= 2 * error:
        rows.append([arm, random_arm, float(keep), metric, float(ours.mean()), float(theirs.mean()), gap])
  return pd.DataFrame(rows, columns=columns)


def describe_below_random(table: pd.DataFrame) -> list[str]:
  """One line per arm that lost to random, with what to try instead."""
  lines = []
  for arm, group in table.groupby("arm", sort=False):
    gaps = ", ".join(f"{row.metric.replace('_', ' ')} {100 * row.gap:.1f} points" for row in group.itertuples())
    first = group.iloc[0]
    lines.append(
      f"note: {arm} is well below {first['random_arm']}, a random subset of the same size ({gaps}):"
      " keeping the hardest fails with weak proxies and with small or noisy data (Sorscher et al., 2022: keep"
      " the easiest when data is scarce); try strategy easiest or offset, a larger keep, or better proxies"
    )
  return lines
