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
# # Why this prediction?
#
# Every score in the manifest is about one example on its own. TracIn answers
# the other question: for a test example the proxies get wrong, which training
# examples pushed the model toward its answer and which against it?
# `pruning.influence.explain` reads a few checkpoints the proxies kept as they
# trained (`keep_checkpoints=True`; without them it trains the proxies again)
# and computes `sum_k lr_k <grad loss(w_k, train), grad loss(w_k, test)>`
# exactly over every parameter, without forming a per-example gradient of the
# training data.
#
# Digits with 20% of the training labels flipped: a wrong prediction is often
# the work of wrong labels. The workload shrinks when `CI` is set.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import pruning
from pruning.influence import explain

pruning.apply_xla_defaults()  # the project's measured XLA CPU settings, before the first computation
SMALL = bool(os.environ.get("CI"))

dataset = pruning.load_dataset("digits", label_noise=0.2)
manifest = pruning.score_dataset(
  dataset,
  model="mlp",
  model_options={"hidden": [64]},
  training=pruning.TrainConfig(epochs=3 if SMALL else 10, batch_size=64),
  seeds=range(2 if SMALL else 3),
  scores=["el2n", "tracin_self"],
  keep_checkpoints=True,  # `explain` reads the TracIn checkpoints instead of training the proxies again
  progress=False,
)
manifest.table.head()

# %% [markdown]
# Explain every test digit the proxies get wrong. With `target="prediction"`
# each one's loss is taken at the class the proxies predicted, so the
# proponents are the training examples that made that prediction.

# %%
result = explain(manifest, dataset, test="errors", target="prediction", progress=False)
print(f"{len(result.test_ids)} wrong predictions on the test split; checkpoints at epochs {result.checkpoints}")
result.table(top=5).head(10)

# %% [markdown]
# The first wrong prediction with its six strongest proponents (top row) and
# opponents (bottom row), each titled with its given label; `!` marks a label
# the study flipped.

# %%
result.plot(0, dataset, top=6)
plt.show()

# %% [markdown]
# How often are the top proponents of a wrong prediction flipped examples,
# against the 20% of the training split that is flipped?

# %%
flipped = dataset.train.is_noisy
proponents = np.argsort(-result.values, axis=0)[:10]
print(
  f"flipped among the top 10 proponents: {flipped[proponents].mean():.0%}; in the training split: {flipped.mean():.0%}"
)

# %% [markdown]
# The same question on text: a small transformer on synthetic sentences with
# flipped labels; of the first 20 test sentences, the first one it gets wrong
# and the training sentences behind its prediction.

# %%
pruning.apply_xla_defaults("transformer")
text = pruning.load_dataset("synthtext", label_noise=0.2, vocab_size=500, max_length=16 if SMALL else 48)
text_manifest = pruning.score_dataset(
  text,
  model="transformer",
  model_options={"hidden": 16 if SMALL else 32, "layers": 1, "heads": 2, "mlp": 32 if SMALL else 64},
  training=pruning.TrainConfig(epochs=2 if SMALL else 4, batch_size=64),
  seeds=range(1 if SMALL else 2),
  scores=["el2n"],
  keep_checkpoints=True,
  progress=False,
)
sentences = explain(text_manifest, text, test=list(text.test.ids[:20]), target="prediction", progress=False)
wrong = int(np.flatnonzero(sentences.predictions != sentences.test_labels)[0])  # the first wrong prediction
names = text.class_names
print(
  f"{text.test.text[sentences.test_rows[wrong]]!r}: label {names[sentences.test_labels[wrong]]},"
  f" predicted {names[sentences.predictions[wrong]]}"
)
sentences.explained(wrong, text, top=4)[["direction", "rank", "train_class", "is_noisy", "influence", "text"]]
