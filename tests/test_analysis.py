"""The notebook API: joins and figures, checked against the data they show."""

from __future__ import annotations

import numpy as np
import pytest

import pruning
from pruning import analysis


@pytest.mark.slow
def test_join_dataset_attaches_each_rows_input(linear_manifest, digits):
  frame = analysis.join_dataset(linear_manifest, digits)
  for row in (0, 17, len(frame) - 1):
    assert np.array_equal(frame["x"].iloc[row], digits.train.x[frame["index"].iloc[row]])
  assert frame["class_name"].iloc[0] == str(frame["label"].iloc[0])
  with pytest.raises(pruning.UserError, match="fingerprint"):
    analysis.join_dataset(linear_manifest, pruning.load_dataset("mnist1d"))


def test_gallery_rows_are_the_extremes(linear_manifest):
  rows = analysis.gallery_rows(linear_manifest, "margin", 5)
  margin = linear_manifest.table["margin"].to_numpy()  # lower margin = harder
  assert set(rows["hardest"]) == set(np.argsort(margin)[:5])
  assert set(rows["easiest"]) == set(np.argsort(-margin)[:5])
  assert set(rows["most variable"]) == set(np.argsort(-linear_manifest.table["margin_std"].to_numpy())[:5])


@pytest.mark.slow
def test_figures_are_drawn_and_saved(linear_manifest, digits, tmp_path):
  figures = [
    analysis.plot_score_distributions(linear_manifest, "el2n", path=tmp_path / "box.png"),
    analysis.plot_score_scatter(linear_manifest, "el2n", "loss", path=tmp_path / "scatter.png"),
    analysis.plot_gallery(linear_manifest, digits, "el2n", count=4, path=tmp_path / "gallery.png"),
  ]
  assert "Spearman" in figures[1].axes[0].get_title()
  assert len(figures[2].axes) == 12
  for name in ("box.png", "scatter.png", "gallery.png"):
    assert (tmp_path / name).stat().st_size > 5_000
  one_d = pruning.load_dataset("mnist1d")
  manifest = pruning.score_dataset(
    one_d, model="linear", training=pruning.TrainConfig(epochs=1), seeds=[0], progress=False
  )
  gallery = analysis.plot_gallery(manifest, one_d, "el2n", count=3)
  assert gallery.axes[0].lines  # 1-D data is drawn as curves


def test_kept_per_class_table(linear_manifest):
  subsets = {"a": pruning.select(linear_manifest, keep=100, strategy="random", class_rule="balanced")}
  table = analysis.kept_per_class(subsets, num_classes=10)
  assert table["a"].tolist() == [10] * 10
