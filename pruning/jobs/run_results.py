"""What a finished run reports: the tidy results table (one row per retrained
model), the per-arm summary as text, and the run's plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pruning.config import Arm, PipelineConfig
from pruning.evaluation import SUMMARY_METRICS
from pruning.manifest import Manifest
from pruning.plots import plot_arm_metrics, plot_kept_per_class, plot_pruning_curves, plot_remedies
from pruning.retraining import RetrainResult
from pruning.runtime.atomic import atomic_path
from pruning.selection import parse_keep


def results_table(
  retrained: list[RetrainResult],
  arms: dict[str, Arm],
  subsets: dict[str, Manifest],
  *,
  full_counts: np.ndarray,
  noisy: np.ndarray | None,
  sources: dict[str, str] | None = None,
) -> pd.DataFrame:
  """The tidy table of a run: one row per retrained model (arm x seed).

  Columns: arm, rule, strategy, class_rule, score, keep (the fraction or count
  asked for; 1.0 for the full data), kept, remedy, seed, the metrics, then
  `kept_class_<c>` and `recall_class_<c>` per class, and `noisy_kept` (the
  fraction of kept examples that are mislabeled) where the data has label noise.
  """
  rows = []
  num_classes = len(full_counts)
  for result in retrained:
    source = (sources or {}).get(result.name, result.name)  # the selection an `ARM+REMEDY` arm retrained
    arm = arms.get(source)
    subset = subsets.get(source)
    if subset is None:
      kept_per_class, kept_noisy = full_counts, noisy
    else:
      kept_per_class = np.bincount(subset.table["label"].to_numpy(), minlength=num_classes)
      kept_noisy = None if noisy is None else noisy[subset.table["index"].to_numpy()]
    selection = arm.selection if arm else None
    for record in result.per_seed.to_dict(orient="records"):
      row = {
        "arm": result.name,
        "rule": arm.rule if arm else "full",
        "strategy": selection.strategy if selection else "full",
        "class_rule": selection.class_rule if selection else "none",
        "score": (selection.score or "") if selection and selection.strategy != "random" else "",
        "keep": float(parse_keep(selection.keep)) if selection else 1.0,
        "kept": result.num_examples,
        "remedy": result.remedy,
        "seed": record["seed"],
        **{m: record[m] for m in SUMMARY_METRICS if m in record},
      }
      if kept_noisy is not None:
        row["noisy_kept"] = float(kept_noisy.mean()) if len(kept_noisy) else 0.0
      row.update({f"kept_class_{c}": int(kept_per_class[c]) for c in range(num_classes)})
      row.update({f"recall_class_{c}": (np.nan if r is None else r) for c, r in enumerate(record["per_class_recall"])})
      rows.append(row)
  return pd.DataFrame(rows)


def write_table(frame: pd.DataFrame, output_dir: Path, stem: str) -> None:
  """`stem.csv` and `stem.parquet`, each written atomically."""
  with atomic_path(output_dir / f"{stem}.csv", overwrite=True) as tmp:
    frame.to_csv(tmp, index=False)
  with atomic_path(output_dir / f"{stem}.parquet", overwrite=True) as tmp:
    frame.to_parquet(tmp, index=False)


def format_summary(summary: pd.DataFrame) -> str:
  """The report table printed at the end of a run."""
  lines = [
    f"{'arm':<24} {'kept':>6}  {'accuracy':>15}  {'worst-class recall':>18}  {'balanced acc':>12}  {'macro-F1':>8}"
  ]
  for row in summary.itertuples():
    lines.append(
      f"{row.name:<24} {row.kept:>6}  {row.accuracy:>8.4f} ± {row.accuracy_std:.4f}  "
      f"{row.worst_class_recall:>9.4f} ± {row.worst_class_recall_std:.4f}  "
      f"{row.balanced_accuracy:>12.4f}  {row.macro_f1:>8.4f}"
    )
  return "\n".join(lines)


def plot_run(
  config: PipelineConfig,
  results: pd.DataFrame,
  summary: pd.DataFrame,
  kept: dict,
  subsets: dict[str, Manifest],
  output_dir: Path,
  *,
  class_names,
) -> None:
  """kept_per_class.png, and accuracy.png (bars per arm) or, for a sweep,
  pruning_curves.png (metrics against fraction kept)."""
  if config.sweep.keep:
    smallest = min(config.sweep.keep)
    kept = {"full": kept["full"], **{name: counts for name, counts in kept.items() if name.endswith(f"@{smallest}")}}
    plot_pruning_curves(results, output_dir / "pruning_curves.png", overwrite=True)
  elif len(config.remedies) > 1:
    plot_remedies(results, output_dir / "remedies.png", overwrite=True)
  elif len(summary):
    baseline = next((n for n, s in subsets.items() if (s.selection or {}).get("strategy") == "random"), None)
    if len(config.remedies) > 1:
      baseline = None  # one random arm per remedy: no single line to compare with
    plot_arm_metrics(summary.to_dict(orient="records"), output_dir / "accuracy.png", baseline=baseline, overwrite=True)
  if subsets:
    plot_kept_per_class(kept, output_dir / "kept_per_class.png", class_names=class_names, overwrite=True)
