"""Notebook analysis: a manifest joined with its data, and the figures analysts
look at (matplotlib; each function returns its `Figure`, and saves it when
given a path).

    manifest = pruning.Manifest.read_parquet("runs/quickstart/manifest.parquet")
    frame = pruning.analysis.join_dataset(manifest, pruning.load_dataset("digits"))
    pruning.analysis.plot_score_distributions(manifest, "el2n")
    pruning.analysis.plot_score_scatter(manifest, "el2n", "aum")
    pruning.analysis.plot_gallery(manifest, dataset, "el2n")
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import stats

from pruning.manifest import Manifest, std_column
from pruning.plots import finish_figure, pyplot
from pruning.selection.order import smallest
from pruning.selection.strategies import difficulty


def join_dataset(manifest: Manifest, dataset) -> pd.DataFrame:
  """The manifest's table with each example's input (column `x`, one array per
  row) and class name; refuses data other than the manifest's."""
  manifest.check_dataset(dataset)
  frame = manifest.table.copy()
  rows = frame["index"].to_numpy()
  frame["x"] = list(dataset.train.x[rows])
  if dataset.is_text:  # the sentences themselves, one column per text column
    texts = dataset.train.text[rows].reshape(len(rows), -1)
    for j, column in enumerate(dataset.text_columns):
      frame[column] = texts[:, j]
  names = dataset.class_names or [str(c) for c in range(dataset.num_classes)]
  frame["class_name"] = [names[label] for label in frame["label"]]
  return frame


def plot_score_distributions(
  manifest: Manifest, score: str, *, class_names=None, path: str | os.PathLike | None = None, overwrite: bool = False
):
  """One box per class of `score`'s seed mean: which classes hold the hard examples."""
  plt = pyplot()
  harder = manifest.score_info(score)["harder"]
  table = manifest.table
  labels = np.unique(table["label"])
  figure, axis = plt.subplots(figsize=(max(6, 0.6 * len(labels) + 2), 3.6))
  axis.boxplot([table.loc[table["label"] == c, score] for c in labels], showfliers=False)
  axis.set_xticks(np.arange(1, len(labels) + 1), [class_names[c] if class_names else str(c) for c in labels])
  axis.set_xlabel("class")
  axis.set_ylabel(score)
  axis.set_title(f"{score} by class ({harder} is harder)")
  return finish_figure(figure, path, overwrite=overwrite)


def plot_score_scatter(
  manifest: Manifest, x_score: str, y_score: str, *, class_names=None, path=None, overwrite: bool = False
):
  """Two scores against each other, one colour per class (named in the legend), with their Spearman correlation."""
  plt = pyplot()
  table = manifest.table
  manifest.score_info(x_score), manifest.score_info(y_score)
  rho = stats.spearmanr(table[x_score], table[y_score]).statistic
  figure, axis = plt.subplots(figsize=(5.6, 4.2))
  names = class_names or (manifest.provenance.get("dataset") or {}).get("class_names")
  labels = np.unique(table["label"])
  colours = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
  for k, label in enumerate(labels):
    rows = table["label"] == label
    name = names[label] if names is not None and label < len(names) else str(label)
    axis.scatter(table.loc[rows, x_score], table.loc[rows, y_score], color=colours(k % colours.N), s=6, alpha=0.7,
                 label=name)  # fmt: skip
  if len(labels) <= 20:
    axis.legend(title="class", fontsize="x-small", markerscale=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
  axis.set_xlabel(x_score)
  axis.set_ylabel(y_score)
  axis.set_title(f"Spearman ρ = {rho:.3f}")
  return finish_figure(figure, path, overwrite=overwrite)


def gallery_rows(manifest: Manifest, score: str, count: int) -> dict[str, np.ndarray]:
  """Manifest rows of the `count` hardest, easiest and most variable (highest
  standard deviation over seeds) examples by `score`."""
  info = manifest.score_info(score)
  hardness = difficulty(manifest.table[score].to_numpy(), info["harder"])
  spread = manifest.table[std_column(score)].to_numpy()

  def top(keys):
    chosen = smallest(keys, count)
    return chosen[np.argsort(keys[chosen], kind="stable")]

  return {"hardest": top(-hardness), "easiest": top(hardness), "most variable": top(-spread)}


def text_gallery(manifest: Manifest, dataset, score: str, *, count: int = 8) -> pd.DataFrame:
  """The hardest, easiest and most variable sentences by `score`: one row each
  with its group, id, class, score (mean and std over seeds) and text columns
  (and `is_noisy` where a study flipped labels). Text data's `plot_gallery`."""
  from pruning.errors import UserError

  if not dataset.is_text:
    raise UserError(f"{dataset.spec} is not text: draw its examples with plot_gallery")
  frame = join_dataset(manifest, dataset)
  columns = ["example_id", "class_name", score, std_column(score), *dataset.text_columns]
  columns += ["is_noisy"] if "is_noisy" in frame else []
  parts = []
  for group, rows in gallery_rows(manifest, score, count).items():
    part = frame.iloc[rows][columns].copy()
    part.insert(0, "group", group)
    parts.append(part)
  return pd.concat(parts, ignore_index=True)


def plot_gallery(manifest: Manifest, dataset, score: str, *, count: int = 8, path=None, overwrite: bool = False):
  """The hardest, easiest and most variable examples by `score`, as images
  (or as curves for 1-D data such as mnist1d), titled with label and score.
  Text is shown as text: see `text_gallery`."""
  if dataset.is_text:
    from pruning.errors import UserError

    raise UserError("text examples are sentences, not pictures: show them with pruning.analysis.text_gallery")
  plt = pyplot()
  frame = join_dataset(manifest, dataset)
  groups = gallery_rows(manifest, score, count)
  figure, axes = plt.subplots(len(groups), count, figsize=(1.6 * count, 1.9 * len(groups)), squeeze=False)
  for row_axes, (title, rows) in zip(axes, groups.items()):
    for axis, row in zip(row_axes, rows):
      example = frame.iloc[int(row)]
      x = np.asarray(example["x"])
      if x.ndim >= 2:
        axis.imshow(x[..., 0] if x.shape[-1] == 1 else (x - x.min()) / max(np.ptp(x), 1e-12), cmap="gray")
        axis.set_xticks([]), axis.set_yticks([])
      else:
        axis.plot(x, linewidth=1)
        axis.set_xticks([]), axis.set_yticks([])
      axis.set_title(f"{example['class_name']}  {example[score]:.2f}", fontsize=8)
    for axis in row_axes[len(rows) :]:
      axis.axis("off")
    row_axes[0].set_ylabel(title, fontsize=9)
  figure.suptitle(f"Examples by {score}")
  figure.tight_layout()
  return finish_figure(figure, path, overwrite=overwrite)


def kept_per_class(subsets: dict[str, Manifest], *, num_classes: int) -> pd.DataFrame:
  """Examples kept per class by each subset: a classes x subsets table."""
  return pd.DataFrame({name: np.bincount(s.table["label"], minlength=num_classes) for name, s in subsets.items()})
