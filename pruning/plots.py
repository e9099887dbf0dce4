"""Figures for reports and notebooks (matplotlib, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pruning.atomic import atomic_path


def _pyplot():
  import matplotlib

  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt

  return plt


def _save(figure, path, *, overwrite: bool) -> Path:
  with atomic_path(path, overwrite=overwrite) as tmp:
    figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
  _pyplot().close(figure)
  return Path(path)


def plot_kept_per_class(kept: dict[str, list[int]], path: str | os.PathLike, *,
                        class_names=None, overwrite: bool = False) -> Path:
  """Grouped bars: examples kept in each class by each arm ({arm: counts})."""
  plt = _pyplot()
  arms = list(kept)
  num_classes = max(len(v) for v in kept.values())
  positions = np.arange(num_classes)
  width = 0.8 / max(len(arms), 1)
  figure, axis = plt.subplots(figsize=(max(6, num_classes * 0.6), 3.6))
  for i, arm in enumerate(arms):
    counts = np.zeros(num_classes)
    counts[: len(kept[arm])] = kept[arm]
    axis.bar(positions + (i - (len(arms) - 1) / 2) * width, counts, width, label=arm)
  axis.set_xticks(positions, class_names or [str(c) for c in range(num_classes)])
  axis.set_xlabel("class")
  axis.set_ylabel("examples kept")
  axis.set_title("Examples kept per class")
  axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return _save(figure, path, overwrite=overwrite)


def plot_arm_metrics(summaries: list[dict], path: str | os.PathLike, *, baseline: str | None = "random",
                     overwrite: bool = False) -> Path:
  """Test accuracy and worst-class recall per arm (mean and std over seeds),
  with the `baseline` arm's accuracy drawn as a line."""
  plt = _pyplot()
  names = [s["name"] for s in summaries]
  figure, axes = plt.subplots(1, 2, figsize=(max(7, 1.8 * len(names) + 3), 3.6))
  for axis, metric, title in ((axes[0], "accuracy", "Test accuracy"),
                              (axes[1], "worst_class_recall", "Worst-class recall")):
    means = [s[metric] for s in summaries]
    stds = [s[f"{metric}_std"] for s in summaries]
    bars = axis.bar(names, means, yerr=stds, capsize=4, color="tab:blue")
    for bar, summary in zip(bars, summaries):
      if summary["name"] == baseline:
        bar.set_color("tab:gray")
    base = next((s for s in summaries if s["name"] == baseline), None)
    if base is not None:
      axis.axhline(base[metric], color="tab:gray", linestyle="--", label=f"{baseline} baseline")
      axis.legend(fontsize="small", loc="lower right")
    low = min(m - s for m, s in zip(means, stds))
    axis.set_ylim(max(0.0, low - 0.05), 1.0)
    axis.set_title(title)
    axis.tick_params(axis="x", rotation=20)
  return _save(figure, path, overwrite=overwrite)


def plot_pruning_curves(results, path: str | os.PathLike, *, metrics=("accuracy", "worst_class_recall"),
                        overwrite: bool = False) -> Path:
  """Metrics against the fraction kept, one line per selection rule (mean over
  retraining seeds, band = one standard deviation); `random` dashed grey, the
  full data as a horizontal line. `results` is a run's tidy results table."""
  plt = _pyplot()
  titles = {"accuracy": "Test accuracy", "worst_class_recall": "Worst-class recall",
            "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro-F1", "auroc": "AUROC (OvR)",
            "auprc": "AUPRC (OvR)"}
  figure, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
  full = results[results["rule"] == "full"]
  swept = results[results["rule"] != "full"]
  for axis, metric in zip(axes[0], metrics):
    for rule, rows in swept.groupby("rule", sort=False):
      stats = rows.groupby("keep")[metric].agg(["mean", "std"]).fillna(0.0).sort_index()
      style = {"color": "tab:gray", "linestyle": "--"} if rule == "random" else {}
      line, = axis.plot(stats.index, stats["mean"], marker="o", markersize=3, label=rule, **style)
      axis.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        color=line.get_color(), alpha=0.15)
    if len(full):
      mean, std = full[metric].mean(), full[metric].std(ddof=0)
      axis.axhline(mean, color="black", linewidth=1, label="full data")
      axis.axhspan(mean - std, mean + std, color="black", alpha=0.08)
    axis.set_xlabel("fraction kept")
    axis.set_title(titles.get(metric, metric))
    axis.grid(alpha=0.3)
  axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return _save(figure, path, overwrite=overwrite)
