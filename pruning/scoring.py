"""Scoring a dataset end to end: train proxies, compute scores, build the manifest."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError
from pruning.manifest import (
  ROW_GROUP_ROWS,
  Manifest,
  ManifestWriter,
  build_manifest,
  manifest_provenance,
  manifest_rows,
)
from pruning.runtime.progress import progress_bar
from pruning.scores import checkpoint_epochs, compute_scores, get_score, parse_requests
from pruning.scores.vog import VOG_SCORES, VoGAccumulator
from pruning.scores.vog import checkpoint_epochs as vog_checkpoint_epochs
from pruning.shards import shard_info
from pruning.training import TrainConfig, TrainedModels, train_models
from pruning.training.recorder import DEFAULT_WINDOW


def score_dataset(
  dataset: Dataset,
  *,
  model: str,
  model_options: dict | None = None,
  config: TrainConfig,
  seeds: Sequence[int],
  scores: Sequence = ("el2n",),
  pipeline_config: dict | None = None,
  vog_checkpoints: int | None = None,
  dynamics_window: int = DEFAULT_WINDOW,
  checkpointer=None,
  shard: tuple[int, int] | None = None,
  progress: bool = True,
) -> Manifest:
  """Trains `len(seeds)` proxies for `config.epochs` epochs and scores the training split.

  A score request `NAME` is computed at the end of proxy training and `NAME@E`
  at the checkpoint of epoch E (see `pruning.scores`). `vog_checkpoints` K
  makes the VoG scores read K evenly spaced epochs instead of every epoch.
  `dynamics_window` is J, the window of `dynamic_uncertainty` (He et al. use
  10 epochs); with fewer proxy epochs one window spans them all (a warning
  says so, and the provenance records the window used).
  With a `checkpointer` proxy training saves its state every epoch and
  resumes from a checkpoint of the same run (`pruning.training.checkpointing`).
  `shard=(i, n)` scores only the i-th of n contiguous blocks of rows, after
  training the proxies on all of them (see `pruning.shards`).

  The two halves are `train_proxies` and `score_with_proxies`: a sharded job
  can train once and score its shards in other processes.
  """
  models = train_proxies(
    dataset,
    model=model,
    model_options=model_options,
    config=config,
    seeds=seeds,
    scores=scores,
    vog_checkpoints=vog_checkpoints,
    dynamics_window=dynamics_window,
    checkpointer=checkpointer,
    progress=progress,
  )
  return score_with_proxies(
    models,
    dataset,
    config=config,
    scores=scores,
    pipeline_config=pipeline_config,
    vog_checkpoints=vog_checkpoints,
    shard=shard,
    progress=progress,
  )


def train_proxies(
  dataset: Dataset,
  *,
  model: str,
  model_options: dict | None = None,
  config: TrainConfig,
  seeds: Sequence[int],
  scores: Sequence = ("el2n",),
  vog_checkpoints: int | None = None,
  dynamics_window: int = DEFAULT_WINDOW,
  checkpointer=None,
  progress: bool = True,
) -> TrainedModels:
  """The proxies `score_dataset` scores with: trained on the whole training
  split, keeping the checkpoints and running statistics the `scores` need.

  A `checkpointer` that holds the finished training of the same run returns
  it without training again (this is how shards share one training).
  """
  requests = parse_requests(scores)
  hooks = []
  if any(r.name in VOG_SCORES for r in requests):
    vog = VoGAccumulator(dataset.train.x, dataset.train.y, epochs=vog_checkpoint_epochs(config.epochs, vog_checkpoints))
    hooks.append(vog)
  if isinstance(dynamics_window, bool) or not isinstance(dynamics_window, int) or dynamics_window < 2:
    raise UserError(f"dynamics window {dynamics_window!r} must be a whole number of epochs >= 2 (He et al. use 10)")
  if any(r.name == "dynamic_uncertainty" for r in requests) and config.epochs < dynamics_window:
    warnings.warn(
      f"dynamic_uncertainty: {config.epochs} proxy epochs are fewer than its window of"
      f" {dynamics_window}, so one window spans all {config.epochs}; train longer or set"
      " proxy.dynamics_window (--dynamics-window)",
      UserWarning,
      stacklevel=2,
    )
  models = train_models(
    dataset.train.x,
    dataset.train.y,
    model=model,
    model_options=model_options,
    num_classes=dataset.num_classes,
    seeds=seeds,
    config=config,
    normalize=dataset.normalize,
    checkpoint_epochs=checkpoint_epochs(requests),
    epoch_hooks=hooks,
    checkpointer=checkpointer,
    record_dynamics=any(not get_score(r.name).at_checkpoint for r in requests),
    dynamics_window=dynamics_window,
    desc="proxy training",
    progress=progress,
  )
  models.extras["dynamics_window"] = dynamics_window
  if hooks:
    models.extras["vog_raw"] = vog.raw()
  return models


def score_with_proxies(
  models: TrainedModels,
  dataset: Dataset,
  *,
  config: TrainConfig,
  scores: Sequence = ("el2n",),
  pipeline_config: dict | None = None,
  vog_checkpoints: int | None = None,
  shard: tuple[int, int] | None = None,
  progress: bool = True,
) -> Manifest:
  """The manifest of `dataset`'s training split (or of one `shard`) scored with
  proxies from `train_proxies` (same dataset, config and scores)."""
  requests = parse_requests(scores)
  part = None if shard is None else shard_info(len(dataset.train), *shard)
  if part is None:
    values = compute_scores(models, dataset.train.x, dataset.train.y, requests, progress=progress)
  else:
    start, stop = part["start"], part["stop"]  # a slice: mapped features stay mapped
    values = compute_scores(
      models,
      dataset.train.x[start:stop],
      dataset.train.y[start:stop],
      requests,
      progress=progress,
      rows=np.arange(start, stop),
      all_y=dataset.train.y,
    )
  return build_manifest(
    dataset,
    values,
    score_infos=_score_infos(requests, config, vog_checkpoints, models),
    models=models,
    training=dataclasses.asdict(config),
    config=pipeline_config,
    validation=validation_summary(models, dataset, epoch=config.epochs),
    shard=part,
  )


def score_to_parquet(
  models: TrainedModels,
  dataset: Dataset,
  path,
  *,
  config: TrainConfig,
  scores: Sequence = ("el2n",),
  pipeline_config: dict | None = None,
  vog_checkpoints: int | None = None,
  shard: tuple[int, int] | None = None,
  overwrite: bool = False,
  progress: bool = True,
) -> int:
  """`score_with_proxies`, streamed: scores `ROW_GROUP_ROWS` rows at a time and
  writes each block to the manifest at `path` as it goes, so memory does not
  hold the manifest's table (or, for features mapped from disk, the
  features). The file equals `score_with_proxies(...).to_parquet(path)`.
  Returns the number of rows written.
  """
  requests = parse_requests(scores)
  num_rows = len(dataset.train)
  part = None if shard is None else shard_info(num_rows, *shard)
  start, stop = (0, num_rows) if part is None else (part["start"], part["stop"])
  provenance = manifest_provenance(
    dataset,
    score_infos=_score_infos(requests, config, vog_checkpoints, models),
    models=models,
    training=dataclasses.asdict(config),
    config=pipeline_config,
    validation=validation_summary(models, dataset, epoch=config.epochs),
    shard=part,
  )
  x, y = dataset.train.x, dataset.train.y
  blocks = range(start, max(stop, start + 1), ROW_GROUP_ROWS)
  with ManifestWriter(path, provenance, overwrite=overwrite) as writer:
    for first in progress_bar(blocks, desc="scoring", unit="block", enabled=progress):
      last = min(first + ROW_GROUP_ROWS, stop)
      rows = np.arange(first, last)
      values = compute_scores(models, x[first:last], y[first:last], requests, progress=False, rows=rows, all_y=y)
      writer.write(manifest_rows(dataset, values, rows, seeds=models.seeds))
  return writer.rows


def _score_infos(requests, config: TrainConfig, vog_checkpoints: int | None, models) -> dict[str, dict]:
  """What the manifest's provenance says about each score column."""
  infos = {}
  for request in requests:
    score = get_score(request.name)
    infos[request.column] = {
      "score": score.name,
      "epoch": config.epochs if request.epoch is None else request.epoch,
      "during_training": not score.at_checkpoint,
      "harder": score.harder,
      "description": score.description,
      "reference": score.reference,
      **({"checkpoints": vog_checkpoint_epochs(config.epochs, vog_checkpoints)} if score.name in VOG_SCORES else {}),
      **(_window(models, config) if score.name == "dynamic_uncertainty" else {}),
    }
  return infos


def validation_summary(models, dataset: Dataset, *, epoch: int) -> dict | None:
  """Per-class recall of the proxies on the validation split, averaged over seeds:
  what the `drop` class rule shares the budget by. None without a validation split."""
  split = dataset.validation
  if split is None:
    return None
  predictions = models.predict(split.x)
  counts = np.bincount(split.y, minlength=dataset.num_classes)
  recall = []
  for label, count in enumerate(counts):
    hits = (predictions[:, split.y == label] == label).mean(axis=1) if count else None
    recall.append(None if hits is None else float(hits.mean()))
  return {
    "num_examples": len(split),
    "examples_per_class": counts.tolist(),
    "epoch": epoch,
    "accuracy": float((predictions == split.y[None]).mean()),
    "per_class_recall": recall,
  }


def _window(models, config: TrainConfig) -> dict:
  window = int(models.extras.get("dynamics_window", DEFAULT_WINDOW))
  return {"window": window, "window_used": min(window, config.epochs)}
