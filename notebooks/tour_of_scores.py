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
# # A tour of the scores on digits
#
# Train a few proxy models, score every training example with EL2N, exact
# GraNd, training dynamics (AUM, forgetting) and VoG, then look at what the
# scores say: how stable they are across seeds, how they relate to each other
# and to the input norm, and which examples they call hard. The workload
# shrinks when the `CI` environment variable is set.

# %%
import os

import pruning
from pruning import analysis

pruning.apply_xla_defaults()  # the project's measured XLA CPU settings, before the first computation
SMALL = bool(os.environ.get("CI"))
SEEDS = range(2 if SMALL else 5)
EPOCHS = 2 if SMALL else 5

dataset = pruning.load_dataset("digits")
manifest = pruning.score_dataset(
  dataset,
  model="mlp",
  training=pruning.TrainConfig(epochs=EPOCHS),
  seeds=SEEDS,
  scores=["el2n", "grand", "grand@0", "aum", "forgetting", "margin", "vog"],
  progress=False,
)
manifest.table.head()

# %% [markdown]
# Each score keeps its per-seed values (`el2n_seed0`, ...). How much do the
# seeds agree, and how similar are the kept sets they would choose?

# %%
pruning.seed_stability(manifest)

# %% [markdown]
# Rank correlations between scores, and with the input norm: GraNd at
# initialisation tracks the input norm (Kirsch, 2023).

# %%
from pruning.report import input_norms

pruning.score_correlations(manifest, input_norm=input_norms(manifest, dataset)).round(2)

# %%
analysis.plot_score_distributions(manifest, "el2n")
# %%
analysis.plot_score_scatter(manifest, "el2n", "aum")
# %% [markdown]
# The hardest, easiest and most seed-dependent examples by EL2N:

# %%
analysis.plot_gallery(manifest, dataset, "el2n", count=8)
# %% [markdown]
# The figures above never change matplotlib's backend, so your own plots in
# this kernel still show inline:

# %%
import matplotlib.pyplot as plt

plt.hist(manifest.table["el2n"], bins=40)
plt.xlabel("EL2N (mean over seeds)")
plt.ylabel("examples")
