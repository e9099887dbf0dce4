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
# # A tour of the scores on text
#
# The synthetic sentences of `synthtext` (4 topics; some ambiguous, some with
# few topic words; a long tail of lengths), with 10% of the training labels
# flipped. A WordPiece tokenizer is trained on the training split, a small
# transformer encoder is trained as the proxy, and every sentence gets EL2N,
# exact GraNd (ghost norms through attention), VoG on its token embeddings,
# forgetting and AUM. Which sentences do the scores call hard, and do they
# find the flipped labels? The workload shrinks when `CI` is set.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import pruning
from pruning import analysis
from pruning.report import noise_detection

pruning.apply_xla_defaults("transformer")  # the XLA CPU settings measured for this model, before any computation
SMALL = bool(os.environ.get("CI"))

dataset = pruning.load_dataset("synthtext", label_noise=0.1, vocab_size=2000, max_length=16 if SMALL else 64)
print(dataset.tokenizer)
lengths = dataset.sequence_lengths()
plt.hist(lengths, bins=40)
plt.xlabel("tokens per sentence (after truncation)")
plt.ylabel("sentences")
plt.title(f"synthtext: median {np.median(lengths):.0f} tokens, padded to {dataset.train.x.shape[1]}")
plt.show()

# %% [markdown]
# Three proxy seeds (two under `CI`); VoG reads every proxy epoch.

# %%
manifest = pruning.score_dataset(
  dataset,
  model="transformer",
  model_options={"hidden": 16 if SMALL else 64, "layers": 1 if SMALL else 2, "heads": 4, "mlp": 32 if SMALL else 128},
  training=pruning.TrainConfig(epochs=2 if SMALL else 4, batch_size=64),
  seeds=range(2 if SMALL else 3),
  scores=["el2n", "grand", "vog", "forgetting", "aum"],
  progress=False,
)
manifest.table.head()

# %% [markdown]
# How well does each score rank the flipped labels above the clean ones
# (AUROC 0.5 is chance)?

# %%
noise_detection(manifest).sort_values("auroc", ascending=False)

# %% [markdown]
# The hardest, easiest and most variable sentences by EL2N, as text.

# %%
pd.set_option("display.max_colwidth", 120)
analysis.text_gallery(manifest, dataset, "el2n", count=5)

# %% [markdown]
# EL2N against VoG: do the two notions of difficulty agree?

# %%
analysis.plot_score_scatter(manifest, "el2n", "vog")
plt.show()

# %% [markdown]
# Keep the hardest half by EL2N, per class, and look at what it kept.

# %%
subset = pruning.select(manifest, score="el2n", strategy="hardest", keep=0.5)
kept = analysis.join_dataset(subset, dataset)
kept[["example_id", "class_name", "el2n", "text"]].head(8)
