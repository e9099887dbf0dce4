"""Figures for reports and notebooks (matplotlib).

The report figures here are built with matplotlib's object-oriented API
(`matplotlib.figure.Figure`) and written to files: they need no display and
never touch pyplot or the backend, so calling them inside a Jupyter kernel
leaves its inline backend (and the user's own `plt` figures) alone. The
notebook figures in `pruning.analysis` use pyplot, so they show inline, and
never select a backend either: the process that started the kernel or the
script chooses it.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np

from pruning.runtime.atomic import atomic_path


def pyplot():
  """pyplot as the running process configured it (its backend is never changed here)."""
  import matplotlib.pyplot as plt

  return plt


def _figure(**options):
  """A figure outside pyplot's registry: drawn and saved without any backend."""
  from matplotlib.figure import Figure

  return Figure(**options)


def save_figure(figure, path, *, overwrite: bool) -> Path:
  with atomic_path(path, overwrite=overwrite) as tmp:
    figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
  return Path(path)


def finish_figure(figure, path=None, *, overwrite: bool = False):
  """Saves the figure if asked and returns it, open in pyplot (`plt.show()`
  shows it). In a notebook a figure returned as a cell's value would be drawn
  twice, as the value and again when the cell ends: it draws itself only once
  pyplot no longer holds it (`fig` in a later cell)."""
  if path is not None:
    save_figure(figure, path, overwrite=overwrite)
  figure._ipython_display_ = functools.partial(_display_once, figure)
  return figure


def _display_once(figure) -> None:
  """IPython's display hook for our figures: its PNG, at most once per executed
  cell (the cell's value, and the inline backend's drawing at the end of the
  cell or at `plt.show()`, would show it twice)."""
  from IPython import get_ipython
  from IPython.display import Image, display

  cell = getattr(get_ipython(), "execution_count", None)
  if cell is not None and getattr(figure, "_shown_in_cell", None) == cell:
    return
  figure._shown_in_cell = cell
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
  display(Image(buffer.getvalue()))


def plot_kept_per_class(
  kept: dict[str, list[int]], path: str | os.PathLike, *, class_names=None, overwrite: bool = False
) -> Path:
  """Grouped bars: examples kept in each class by each arm ({arm: counts})."""
  arms = list(kept)
  num_classes = max(len(v) for v in kept.values())
  positions = np.arange(num_classes)
  width = 0.8 / max(len(arms), 1)
  figure = _figure(figsize=(max(6, num_classes * 0.6), 3.6))
  axis = figure.subplots()
  for i, arm in enumerate(arms):
    counts = np.zeros(num_classes)
    counts[: len(kept[arm])] = kept[arm]
    axis.bar(positions + (i - (len(arms) - 1) / 2) * width, counts, width, label=arm)
  axis.set_xticks(positions, class_names or [str(c) for c in range(num_classes)])
  axis.set_xlabel("class")
  axis.set_ylabel("examples kept")
  axis.set_title("Examples kept per class")
  axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return save_figure(figure, path, overwrite=overwrite)


def plot_arm_metrics(
  summaries: list[dict], path: str | os.PathLike, *, baseline: str | None = "random", overwrite: bool = False
) -> Path:
  """Test accuracy and worst-class recall per arm (mean and std over seeds),
  with the `baseline` arm's accuracy drawn as a line."""
  names = [s["name"] for s in summaries]
  figure = _figure(figsize=(max(7, 1.8 * len(names) + 3), 3.6))
  axes = figure.subplots(1, 2)
  for axis, metric, title in (
    (axes[0], "accuracy", "Test accuracy"),
    (axes[1], "worst_class_recall", "Worst-class recall"),
  ):
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
    # From 0: a zoomed axis makes a 0.2-point gap look like a collapse. The
    # printed table and summary.csv hold the exact figures.
    axis.set_ylim(0.0, 1.0)
    axis.set_ylabel("test accuracy" if metric == "accuracy" else "recall of the worst class")
    for bar, mean in zip(bars, means):
      axis.annotate(
        f"{mean:.3f}",
        (bar.get_x() + bar.get_width() / 2, mean),
        ha="center",
        va="bottom",
        fontsize=7,
        xytext=(0, 2),
        textcoords="offset points",
      )
    axis.set_title(title)
    axis.tick_params(axis="x", rotation=20)
  return save_figure(figure, path, overwrite=overwrite)


def plot_pruning_curves(
  results, path: str | os.PathLike, *, metrics=("accuracy", "worst_class_recall"), overwrite: bool = False
) -> Path:
  """Metrics against the fraction kept, one line per selection rule (mean over
  retraining seeds, band = one standard deviation); `random` dashed grey, the
  full data as a horizontal line. `results` is a run's tidy results table;
  where it crosses several remedies (a `remedy` column), each rule and the
  full data get one line per remedy, the remedies' lines in one colour per remedy
  for the full data (dotted)."""
  titles = {
    "accuracy": "Test accuracy",
    "worst_class_recall": "Worst-class recall",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro-F1",
    "auroc": "AUROC (OvR)",
    "auprc": "AUPRC (OvR)",
  }
  figure = _figure(figsize=(5.2 * len(metrics), 3.8))
  axes = figure.subplots(1, len(metrics), squeeze=False)
  several = "remedy" in results and results["remedy"].nunique() > 1
  remedies = results["remedy"] if several else "none"
  results = results.assign(line=results["rule"] + (" + " + remedies if several else ""))
  full = results[results["rule"] == "full"]
  swept = results[results["rule"] != "full"]
  # With several remedies: a colour per remedy and a line style per rule.
  remedy_colors = {r: f"C{i % 10}" for i, r in enumerate(dict.fromkeys(results["remedy"]))} if several else {}
  rule_styles = {r: ("-", "--", "-.", ":")[i % 4] for i, r in enumerate(dict.fromkeys(swept["rule"]))}
  for axis, metric in zip(axes[0], metrics):
    for label, rows in swept.groupby("line", sort=False):
      stats = rows.groupby("keep")[metric].agg(["mean", "std"]).fillna(0.0).sort_index()
      style = {"color": "tab:gray", "linestyle": "--"} if label == "random" else {}
      if several:
        first = rows.iloc[0]
        style = {"color": remedy_colors[first["remedy"]], "linestyle": rule_styles[first["rule"]]}
      (line,) = axis.plot(stats.index, stats["mean"], marker="o", markersize=3, label=label, **style)
      axis.fill_between(
        stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=line.get_color(), alpha=0.15
      )
    for label, rows in full.groupby("line", sort=False):
      mean, std = rows[metric].mean(), rows[metric].std(ddof=0)
      color = remedy_colors[rows.iloc[0]["remedy"]] if several else "black"
      axis.axhline(
        mean, color=color, linewidth=1, linestyle=":" if several else "-", label=label.replace("full", "full data")
      )
      axis.axhspan(mean - std, mean + std, color=color, alpha=0.08)
    axis.set_xlabel("fraction kept")
    axis.set_title(titles.get(metric, metric))
    axis.grid(alpha=0.3)
  axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return save_figure(figure, path, overwrite=overwrite)


def _class_labels(num_classes: int, class_names) -> list[str]:
  return list(class_names) if class_names else [str(c) for c in range(num_classes)]


def plot_roc_curves(
  y_true: np.ndarray,
  probabilities: np.ndarray,
  path: str | os.PathLike,
  *,
  class_names=None,
  overwrite: bool = False,
  subtitle: str | None = None,
) -> Path:
  """One-vs-rest ROC curve of every class present in `y_true`, with its AUROC (scikit-learn)."""
  from sklearn import metrics

  from pruning.evaluation import one_vs_rest_classes

  figure = _figure(figsize=(5.2, 4.6))
  axis = figure.subplots()
  names = _class_labels(probabilities.shape[1], class_names)
  for label, positive in one_vs_rest_classes(y_true):
    fpr, tpr, _ = metrics.roc_curve(positive, probabilities[:, label])
    area = metrics.roc_auc_score(positive, probabilities[:, label])
    axis.plot(fpr, tpr, linewidth=1.2, label=f"{names[label]} ({area:.3f})")
  axis.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="chance")
  axis.set_xlabel("false positive rate")
  axis.set_ylabel("true positive rate")
  axis.set_title("ROC, one class against the rest (AUROC)" + (f"\n{subtitle}" if subtitle else ""), fontsize="small")
  axis.legend(fontsize="x-small", loc="lower right", ncol=2)
  return save_figure(figure, path, overwrite=overwrite)


def plot_pr_curves(
  y_true: np.ndarray,
  probabilities: np.ndarray,
  path: str | os.PathLike,
  *,
  class_names=None,
  overwrite: bool = False,
  subtitle: str | None = None,
) -> Path:
  """One-vs-rest precision-recall curve of every class present, with its AUPRC
  and, dashed in the same colour, its prevalence (a random ranking's precision)."""
  from sklearn import metrics

  from pruning.evaluation import one_vs_rest_classes

  figure = _figure(figsize=(5.2, 4.6))
  axis = figure.subplots()
  names = _class_labels(probabilities.shape[1], class_names)
  for label, positive in one_vs_rest_classes(y_true):
    precision, recall, _ = metrics.precision_recall_curve(positive, probabilities[:, label])
    area = metrics.average_precision_score(positive, probabilities[:, label])
    (line,) = axis.step(recall, precision, where="post", linewidth=1.2, label=f"{names[label]} ({area:.3f})")
    axis.axhline(positive.mean(), color=line.get_color(), linestyle="--", linewidth=0.8, alpha=0.7)
  axis.set_xlabel("recall")
  axis.set_ylabel("precision")
  axis.set_ylim(0, 1.02)
  axis.set_title(
    "Precision-recall, one class against the rest (AUPRC;\ndashed: the class's prevalence)"
    + (f"\n{subtitle}" if subtitle else ""),
    fontsize="small",
  )
  axis.legend(fontsize="x-small", loc="lower left", ncol=2)
  return save_figure(figure, path, overwrite=overwrite)


def plot_confusion_matrix(
  y_true: np.ndarray,
  y_pred: np.ndarray,
  path: str | os.PathLike,
  *,
  num_classes: int,
  class_names=None,
  overwrite: bool = False,
  subtitle: str | None = None,
) -> Path:
  """The confusion matrix, each row divided by the class's test examples (the diagonal is recall)."""
  from sklearn import metrics

  counts = metrics.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
  support = counts.sum(axis=1, keepdims=True)
  rates = np.divide(counts, support, out=np.zeros(counts.shape, np.float64), where=support > 0)
  names = _class_labels(num_classes, class_names)
  figure = _figure(figsize=(max(4.5, 0.45 * num_classes + 2), max(4.0, 0.45 * num_classes + 1.5)))
  axis = figure.subplots()
  image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  for (row, column), value in np.ndenumerate(counts):
    if value:
      axis.text(
        column,
        row,
        str(value),
        ha="center",
        va="center",
        fontsize="x-small",
        color="white" if rates[row, column] > 0.5 else "black",
      )
  axis.set_xticks(np.arange(num_classes), names, rotation=90 if num_classes > 10 else 0)
  axis.set_yticks(np.arange(num_classes), names)
  axis.set_xlabel("predicted class")
  axis.set_ylabel("true class")
  axis.set_title(
    "Confusion matrix (colour: share of the true class)" + (f"\n{subtitle}" if subtitle else ""), fontsize="small"
  )
  figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
  return save_figure(figure, path, overwrite=overwrite)


def plot_remedies(
  results,
  path: str | os.PathLike,
  *,
  metrics=("balanced_accuracy", "worst_class_recall", "auroc", "auprc"),
  overwrite: bool = False,
) -> Path:
  """Grouped bars, one panel per metric: for each remedy, one bar per selection
  (the full data and every rule), mean over retraining seeds with a one-standard-
  deviation whisker. `results` is a run's tidy results table with a `remedy` column."""
  remedies = list(dict.fromkeys(results["remedy"]))
  rules = list(dict.fromkeys(results["rule"]))
  metrics = [m for m in metrics if m in results]
  figure = _figure(figsize=(max(4.5, 1.1 * len(remedies) + 1.5) * len(metrics), 3.8))
  axes = figure.subplots(1, len(metrics), squeeze=False)[0]
  width = 0.8 / max(len(rules), 1)
  positions = np.arange(len(remedies))
  for axis, metric in zip(axes, metrics):
    for i, rule in enumerate(rules):
      stats = results[results["rule"] == rule].groupby("remedy")[metric].agg(["mean", "std"]).reindex(remedies)
      offset = (i - (len(rules) - 1) / 2) * width
      axis.bar(positions + offset, stats["mean"], width, yerr=stats["std"].fillna(0.0), capsize=2, label=rule)
    axis.set_xticks(positions, remedies, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.set_title(metric.replace("_", " "))
    axis.grid(axis="y", alpha=0.3)
  axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return save_figure(figure, path, overwrite=overwrite)
