# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Class imbalance: what global selection does to rare classes
#
# Subsample digits to a long tail (imbalance ratio 20), keep 30% by EL2N with
# no class rule (`global`), with equal counts per class (`balanced`), with
# quotas by smoothed validation error (`drop`) and by the raw error of the
# DRoP paper (`drop_raw`), and compare the kept counts and the per-class
# recall of models retrained on each. The workload shrinks when `CI` is set.

# %%
import os

import pandas as pd

import pruning
from pruning import analysis

pruning.apply_xla_defaults()  # the project's measured XLA CPU settings, before the first computation
SMALL = bool(os.environ.get("CI"))
dataset = pruning.load_dataset("digits", validation=0.15, long_tail=20)
print("training examples per class:", pd.Series(dataset.train.y).value_counts().sort_index().tolist())
manifest = pruning.score_dataset(
  dataset,
  model="mlp",
  training=pruning.TrainConfig(epochs=3),
  seeds=range(2 if SMALL else 5),
  scores=["el2n"],
  progress=False,
)

# %%
subsets = {
  rule: pruning.select(manifest, keep=0.3, strategy="hardest", class_rule=rule, score="el2n")
  for rule in ("global", "balanced", "drop", "drop_raw")
}
kept = analysis.kept_per_class(subsets, num_classes=dataset.num_classes)
kept.insert(0, "all", pd.Series(dataset.train.y).value_counts().sort_index().to_numpy())
kept

# %% [markdown]
# Global selection by difficulty follows the classes the proxies find hard,
# not the class sizes; quotas decide the shares first. `drop_raw` can give a
# class whose few validation examples were all right a quota of zero (and
# warns): that class is never trained on, so its test recall is 0. `drop`
# estimates each class's error as (wrong + 1) / (n + 2) from its n validation
# examples, so every class keeps some examples and the budget still leans to
# the classes the proxies get wrong. Now retrain on each subset (the same
# number of steps as the full data) and compare recall per class on the
# balanced test split:

# %%
config = pruning.TrainConfig(epochs=5 if SMALL else 30, batch_size=64)
recall = {}
for rule, subset in {"all": None, **subsets}.items():
  result = pruning.retrain(
    dataset,
    subset,
    spec=pruning.ModelSpec(model="mlp", training=config, seeds=range(1 if SMALL else 3)),
    name=rule,
    progress=False,
  )
  recall[rule] = result.summary()["per_class_recall"]
recall = pd.DataFrame(recall)
recall.loc["worst"] = recall.min()
recall.loc["mean"] = recall.iloc[:-1].mean()
recall.round(3)

# %%
import tempfile

from IPython.display import Image

from pruning.plots import plot_kept_per_class

path = plot_kept_per_class(
  {name: kept[name].tolist() for name in kept}, os.path.join(tempfile.mkdtemp(), "kept_per_class.png")
)
Image(filename=str(path))
