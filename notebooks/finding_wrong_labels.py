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
# # Finding wrong labels
#
# Digits with 20% of the training labels flipped. Score the proxies, then let
# `flag_label_issues` decide which labels are wrong: it estimates how many
# labels of each class are wrong (confident learning on out-of-fold
# probabilities) and flags that many per class, here the hardest by AUM. Look at the suspects with
# their given and likely labels, measure the decision against the truth, and
# select a subset without them. The workload shrinks when `CI` is set.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import pruning
from pruning.config import parse_config
from pruning.flagging.suspects import plot_suspects, suspects_table

pruning.apply_xla_defaults()  # the project's measured XLA CPU settings, before the first computation
SMALL = bool(os.environ.get("CI"))

config = parse_config(
  {
    "name": "wrong_labels",
    "dataset": {"spec": "digits", "label_noise": 0.2},
    "model": "mlp",
    "proxy": {"seeds": 2 if SMALL else 3, "epochs": 5},
    "scores": ["el2n", "aum"],
  }
)
dataset = pruning.load_dataset(**config.dataset.options())
manifest = pruning.score_dataset(dataset, config.proxy_spec(), pipeline_config=config.to_dict(), progress=False)

# %% [markdown]
# Flag: `confident_learning` (the default; cleanlab's rule on the proxies'
# out-of-fold probabilities), `ranked` or `aum_threshold` (Pleiss et al.'s
# threshold samples). On this symmetric noise `ranked` does best
# (STUDIES.md, section 10). The provenance keeps the estimate per class.

# %%
flagged = pruning.flag_label_issues(
  manifest, dataset, options=pruning.FlagOptions(method="ranked", folds=3 if SMALL else 5), progress=False
)
record = flagged.provenance["flagging"]
print(f"flagged {record['flagged']} of {len(flagged)}; estimated wrong per class:", record["estimated_per_class"])

# %% [markdown]
# How good is the decision? This study knows the truth (`is_noisy`).

# %%
table = flagged.table
tp = int((table.is_suspect & table.is_noisy).sum())
precision, recall = tp / table.is_suspect.sum(), tp / table.is_noisy.sum()
print(f"precision {precision:.3f}, recall {recall:.3f}, F1 {2 * precision * recall / (precision + recall):.3f}")

# %% [markdown]
# The suspects, for relabelling: given and likely label (the out-of-fold
# prediction), the evidence the decision read and the class's cutoff.

# %%
suspects_table(flagged, dataset).head(10)

# %%
plot_suspects(flagged, dataset, count=16)
plt.show()

# %% [markdown]
# Keep half of the data by EL2N, after dropping the suspects: the kept set
# is almost clean.

# %%
subset = pruning.select(flagged, score="el2n", strategy="hardest", keep=0.5, drop_suspects=True)
print(f"kept {len(subset)}; mislabeled among them: {np.mean(subset.table.is_noisy):.1%}")
