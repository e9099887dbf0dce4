"""pruning: per-example scores, class-aware data pruning, retraining and export on JAX.

The public API, in the order data flows:

    dataset = load_dataset("digits")
    spec = ProxySpec(model="mlp", training=TrainConfig(epochs=5), seeds=5, scores=["el2n", "aum"])
    manifest = score_dataset(dataset, spec)             # or train_proxies, then score_proxies
    subset = select(manifest, keep=0.5, strategy="hardest", class_rule="proportional", score="el2n")
    result = retrain(dataset, subset, spec=ModelSpec(model="mlp", seeds=3, training=TrainConfig(epochs=30)))
    export_subset(subset, dataset, "subset.npz", format="npz")

Importing `pruning` loads nothing heavy and changes no environment variable:
each name is imported on first use. Call `apply_xla_defaults()` before the
first JAX computation of a notebook or benchmark for the project's measured
XLA CPU settings (the `pruning` command applies them itself).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
  "BACKENDS": "pruning.jobs",
  "CLASS_RULES": "pruning.selection",
  "DATA_SOURCES": "pruning.data",
  "DataConfig": "pruning.data",
  "EXPORT_FORMATS": "pruning.export",
  "FLAGGING_METHODS": "pruning.flagging",
  "MODELS": "pruning.models",
  "STRATEGIES": "pruning.selection",
  "Dataset": "pruning.data",
  "EpochHook": "pruning.training",
  "FlagOptions": "pruning.flagging",
  "Manifest": "pruning.manifest",
  "ModelSpec": "pruning.training",
  "Normalizer": "pruning.data",
  "PipelineConfig": "pruning.config",
  "ProxySpec": "pruning.scores.run",
  "Registry": "pruning.registry",
  "RetrainResult": "pruning.retraining",
  "RunResult": "pruning.jobs",
  "ScoreRequest": "pruning.scores",
  "SelectionRule": "pruning.selection",
  "Split": "pruning.data",
  "TrainConfig": "pruning.training",
  "TrainData": "pruning.training",
  "TrainedModels": "pruning.training",
  "UserError": "pruning.errors",
  "apply_xla_defaults": "pruning.runtime.xla",
  "available_scores": "pruning.scores",
  "build_train_step": "pruning.training",
  "classification_metrics": "pruning.evaluation",
  "compute_scores": "pruning.scores",
  "create_model": "pruning.models",
  "export_subset": "pruning.export",
  "flag_label_issues": "pruning.flagging",
  "load_config": "pruning.config",
  "load_dataset": "pruning.data",
  "noise_detection": "pruning.report",
  "parse_config": "pruning.config",
  "register_class_rule": "pruning.selection",
  "register_flagging_method": "pruning.flagging",
  "register_format": "pruning.export",
  "register_model": "pruning.models",
  "register_score": "pruning.scores",
  "register_source": "pruning.data",
  "register_strategy": "pruning.selection",
  "retrain": "pruning.retraining",
  "run_pipeline": "pruning.jobs",
  "score_correlations": "pruning.report",
  "score_dataset": "pruning.scores.run",
  "score_job": "pruning.jobs",
  "score_proxies": "pruning.scores.run",
  "seed_stability": "pruning.report",
  "select": "pruning.selection",
  "study_table": "pruning.report",
  "train_models": "pruning.training",
  "train_proxies": "pruning.scores.run",
  "write_scores": "pruning.scores.run",
}
_SUBMODULES = ("analysis",)

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
  if name in _SUBMODULES:
    return importlib.import_module(f"pruning.{name}")
  if name not in _EXPORTS:
    raise AttributeError(f"module 'pruning' has no attribute {name!r}")
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__() -> list[str]:
  return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and editors see
  from pruning import analysis
  from pruning.config import PipelineConfig, load_config, parse_config
  from pruning.data import DATA_SOURCES, DataConfig, Dataset, Normalizer, Split, load_dataset, register_source
  from pruning.errors import UserError
  from pruning.evaluation import classification_metrics
  from pruning.export import EXPORT_FORMATS, export_subset, register_format
  from pruning.flagging import FLAGGING_METHODS, FlagOptions, flag_label_issues, register_flagging_method
  from pruning.jobs import BACKENDS, RunResult, run_pipeline, score_job
  from pruning.manifest import Manifest
  from pruning.models import MODELS, create_model, register_model
  from pruning.registry import Registry
  from pruning.report import noise_detection, score_correlations, seed_stability, study_table
  from pruning.retraining import RetrainResult, retrain
  from pruning.runtime.xla import apply_xla_defaults
  from pruning.scores import ScoreRequest, available_scores, compute_scores, register_score
  from pruning.scores.run import ProxySpec, score_dataset, score_proxies, train_proxies, write_scores
  from pruning.selection import CLASS_RULES, STRATEGIES, SelectionRule, register_class_rule, register_strategy, select
  from pruning.training import (
    EpochHook,
    ModelSpec,
    TrainConfig,
    TrainData,
    TrainedModels,
    build_train_step,
    train_models,
  )
