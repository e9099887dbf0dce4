# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pruning curves
#
# What is a subset worth at each budget? A study sweeps fractions kept x
# selection rules x retraining seeds, always with `random` and the full data
# (the same as `pipelines/study_el2n_digits.yaml`, which `STUDIES.md` reports
# at full size). The workload shrinks when `CI` is set.

# %%
import os
import tempfile

import pruning
from pruning.plots import plot_pruning_curves

pruning.apply_xla_defaults()  # the project's measured XLA CPU settings, before the first computation
SMALL = bool(os.environ.get("CI"))
config = pruning.parse_config(
  {
    "name": "curves",
    "dataset": "digits",
    "model": "mlp",
    "training": {"epochs": 5 if SMALL else 30, "batch_size": 64},
    "proxy": {"seeds": 2 if SMALL else 10, "epochs": 1 if SMALL else 3},
    "scores": ["el2n"],
    "selections": [
      {"name": "el2n_hardest", "score": "el2n", "strategy": "hardest", "class_rule": "proportional"},
      {"name": "el2n_easiest", "score": "el2n", "strategy": "easiest", "class_rule": "proportional"},
      {"name": "el2n_ccs", "score": "el2n", "strategy": "ccs", "class_rule": "proportional"},
    ],
    "sweep": {"keep": [0.2, 0.5] if SMALL else [0.1, 0.2, 0.3, 0.5, 0.7]},
    "retrain": {"seeds": 1 if SMALL else 5},
  }
)
result = pruning.run_pipeline(config, output_dir=tempfile.mkdtemp(), progress=False, log=lambda *_: None)
result.results.head()

# %% [markdown]
# Mean ± standard deviation over retraining seeds, one row per rule:

# %%
pruning.study_table(result.results, "accuracy")

# %%
pruning.study_table(result.results, "worst_class_recall")

# %%
from IPython.display import Image

Image(filename=str(plot_pruning_curves(result.results, result.output_dir / "curves.png", overwrite=True)))
