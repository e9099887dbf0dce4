"""Scoring a dataset: one proxy specification, then train, then score.

    spec = ProxySpec(model="mlp", training=TrainConfig(epochs=3), seeds=range(5), scores=["el2n", "aum"])
    models = train_proxies(dataset, spec)           # S seeds, one compiled program
    manifest = score_proxies(models, dataset, spec)  # or write_scores(..., path) to stream into Parquet

`score_dataset` does both in one call. Each score declares what it needs from
training (`pruning.scores.registry.Score`): a checkpoint (`NAME@E`), the
training-dynamics recorder, or an epoch hook (VoG's running gradient
statistics); training switches on only what the requested scores read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError
from pruning.manifest import ROW_GROUP_ROWS, Manifest
from pruning.manifest.build import ManifestWriter, build_manifest, manifest_provenance, manifest_rows
from pruning.runtime.progress import progress_bar
from pruning.scores import ScoreRequest, checkpoint_epochs, compute_scores, get_score, parse_requests
from pruning.scores.embedding import DEFAULT_SIMILARITY
from pruning.scores.tracin import DEFAULT_TRACIN_CHECKPOINTS, kept_checkpoints, tracin_epochs
from pruning.training import (
  DEFAULT_WINDOW,
  ModelSpec,
  TrainConfig,
  TrainData,
  TrainedModels,
  TrainingCheckpointer,
  train_models,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProxySpec:
  """What proxies to train and what to score with them.

  `seeds` is a count N (seeds 0..N-1) or the seeds themselves. `scores` are
  requests `NAME` (end of training) or `NAME@E` (the checkpoint of epoch E).
  `vog_checkpoints` K makes VoG read K evenly spaced epochs instead of every
  epoch of its `vog_window` (`all`, `early` or `late` epochs);
  `dynamics_window` is J, the window of `dynamic_uncertainty` (He et al. use
  10 epochs). `prototypes` is k of `prototype_distance` (default: the number
  of classes) and `duplicate_similarity` the cosine similarity above which
  `is_duplicate` marks a near-duplicate (`pruning.scores.embedding`);
  `tracin_checkpoints` K the evenly spaced epochs TracIn sums over
  (`pruning.scores.tracin`); `keep_checkpoints` keeps the proxies' states at
  those epochs in the cache, so `pruning.influence` reads them instead of
  training the proxies again.
  Everything is checked when the spec is built.
  """

  model: str = "mlp"
  model_options: dict = dataclasses.field(default_factory=dict)
  training: TrainConfig = TrainConfig(epochs=3)
  seeds: Sequence[int] | int = 5
  scores: Sequence[str] = ("el2n",)
  vog_checkpoints: int | None = None
  vog_window: str = "all"
  dynamics_window: int = DEFAULT_WINDOW
  prototypes: int | None = None
  duplicate_similarity: float = DEFAULT_SIMILARITY
  tracin_checkpoints: int = DEFAULT_TRACIN_CHECKPOINTS
  keep_checkpoints: bool = False

  def __post_init__(self):
    # What trains is checked once, as every trainer's ModelSpec checks it.
    spec = ModelSpec(model=self.model, options=self.model_options, seeds=self.seeds, training=self.training)
    object.__setattr__(self, "seeds", spec.seeds)
    object.__setattr__(self, "model_options", spec.options)
    if isinstance(self.scores, str):
      raise UserError(f"scores must be a list of score requests, e.g. [{self.scores!r}]")
    object.__setattr__(self, "scores", tuple(r.column if isinstance(r, ScoreRequest) else str(r) for r in self.scores))
    window = self.dynamics_window
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
      raise UserError(f"dynamics window {window!r} must be a whole number of epochs >= 2 (He et al. use 10)")
    k = self.prototypes
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
      raise UserError(f"prototypes {k!r} must be a whole number of k-means prototypes >= 1")
    similarity = self.duplicate_similarity
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0 < similarity <= 1:
      raise UserError(f"duplicate_similarity {similarity!r} must be a cosine similarity in (0, 1], e.g. 0.95")
    tracin_epochs(self.training.epochs, self.tracin_checkpoints)  # checks the count
    if not isinstance(self.keep_checkpoints, bool):
      raise UserError(f"keep_checkpoints {self.keep_checkpoints!r} must be true or false")
    for request in self.requests:
      get_score(request.name).check(self)

  @property
  def model_spec(self) -> ModelSpec:
    """The proxies to train: model, options, seeds and training."""
    return ModelSpec(model=self.model, options=self.model_options, seeds=self.seeds, training=self.training)

  @property
  def requests(self) -> list[ScoreRequest]:
    return parse_requests(self.scores)


def train_proxies(
  dataset: Dataset, spec: ProxySpec, *, checkpointer: TrainingCheckpointer | None = None, progress: bool = True
) -> TrainedModels:
  """The proxies `spec` describes, trained on the whole training split, keeping
  the checkpoints, training dynamics and hook results the requested scores read.

  A `checkpointer` that holds the finished training of the same run returns
  it without training again (this is how shards share one training).
  """
  requests = spec.requests
  scores = [get_score(r.name) for r in requests]
  hooks = {}  # one hook per factory: VoG's three normalisations share one accumulator
  for score in scores:
    if score.training_hook is not None and score.training_hook not in hooks:
      hooks[score.training_hook] = score.training_hook(dataset, spec)
  # The epochs `NAME@E` requests read, and those a score reads on its own (TracIn's).
  kept = set(checkpoint_epochs(requests))
  for score in scores:
    kept.update(score.checkpoints(spec) if score.checkpoints is not None else ())
  model_spec = spec.model_spec.for_data(dataset)
  kept_run = None
  if spec.keep_checkpoints:  # what `pruning.influence` reads instead of training again
    kept_run = kept_checkpoints(dataset, model_spec, tracin_epochs(spec.training.epochs, spec.tracin_checkpoints))
    kept.update(kept_run.epochs)
  models = train_models(
    TrainData.from_dataset(dataset),
    model_spec,
    checkpoint_epochs=sorted(kept),
    epoch_hooks=list(hooks.values()),
    checkpointer=checkpointer,
    kept_run=kept_run,
    dynamics_window=spec.dynamics_window if any(score.needs_dynamics for score in scores) else None,
    desc="proxy training",
    progress=progress,
  )
  models.extras["dynamics_window"] = spec.dynamics_window
  models.extras["proxy_spec"] = spec
  for hook in hooks.values():
    models.extras.update(hook.results())
  return models


def score_proxies(
  models: TrainedModels,
  dataset: Dataset,
  spec: ProxySpec,
  *,
  shard: tuple[int, int] | None = None,
  pipeline_config: dict | None = None,
  progress: bool = True,
) -> Manifest:
  """The manifest of `dataset`'s training split (or of one `shard` (i, n) of
  its rows, see `pruning.jobs.parts`) scored with proxies from `train_proxies`
  (same dataset and spec). `pipeline_config` is recorded in the provenance."""
  requests = spec.requests
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
  return build_manifest(dataset, values, **_provenance(models, dataset, spec, pipeline_config, part))


def write_scores(
  models: TrainedModels,
  dataset: Dataset,
  spec: ProxySpec,
  path,
  *,
  shard: tuple[int, int] | None = None,
  pipeline_config: dict | None = None,
  overwrite: bool = False,
  progress: bool = True,
) -> int:
  """`score_proxies`, streamed: scores `ROW_GROUP_ROWS` rows at a time and
  writes each block to the manifest at `path` as it goes, so memory holds
  neither the manifest's table nor (for features mapped from disk) the
  features. The file equals `score_proxies(...).to_parquet(path)`.
  Returns the number of rows written.
  """
  requests = spec.requests
  num_rows = len(dataset.train)
  part = None if shard is None else shard_info(num_rows, *shard)
  start, stop = (0, num_rows) if part is None else (part["start"], part["stop"])
  provenance = manifest_provenance(dataset, **_provenance(models, dataset, spec, pipeline_config, part))
  x, y = dataset.train.x, dataset.train.y
  blocks = range(start, max(stop, start + 1), ROW_GROUP_ROWS)
  with ManifestWriter(path, provenance, overwrite=overwrite) as writer:
    for first in progress_bar(blocks, desc="scoring", unit="block", enabled=progress):
      last = min(first + ROW_GROUP_ROWS, stop)
      rows = np.arange(first, last)
      values = compute_scores(models, x[first:last], y[first:last], requests, progress=False, rows=rows, all_y=y)
      writer.write(manifest_rows(dataset, values, rows, seeds=models.seeds))
  return writer.rows


def score_dataset(
  dataset: Dataset,
  spec: ProxySpec | None = None,
  *,
  checkpointer: TrainingCheckpointer | None = None,
  shard: tuple[int, int] | None = None,
  pipeline_config: dict | None = None,
  progress: bool = True,
  **spec_fields,
) -> Manifest:
  """`train_proxies` then `score_proxies`, in one call: the spec, or its fields
  as keywords (`model`, `model_options`, `training`, `seeds`, `scores`,
  `vog_checkpoints`, `vog_window`, `dynamics_window`)."""
  if spec is None:
    spec = ProxySpec(**spec_fields)
  elif spec_fields:
    raise UserError(f"give a ProxySpec or its fields, not both (got {sorted(spec_fields)})")
  models = train_proxies(dataset, spec, checkpointer=checkpointer, progress=progress)
  return score_proxies(models, dataset, spec, shard=shard, pipeline_config=pipeline_config, progress=progress)


def shard_info(num_rows: int, index: int, count: int) -> dict:
  """Which rows shard `index` of `count` scores: [floor(i N / n), floor((i + 1) N / n))."""
  if not 0 <= index < count:
    raise UserError(f"shard {index}/{count} is out of range: use 0..{count - 1}")
  return {
    "index": index,
    "count": count,
    "start": num_rows * index // count,
    "stop": num_rows * (index + 1) // count,
    "num_rows": num_rows,
  }


def _provenance(models, dataset, spec: ProxySpec, pipeline_config, part) -> dict:
  """The keyword arguments of `build_manifest` / `manifest_provenance` beyond the data."""
  epochs = spec.training.epochs
  infos = {}
  for request in spec.requests:
    score = get_score(request.name)
    infos[request.column] = {
      "score": score.name,
      "epoch": epochs if request.epoch is None else request.epoch,
      "during_training": not score.at_checkpoint,
      "harder": score.harder,
      "description": score.description,
      "reference": score.reference,
      **(score.provenance(spec, models) if score.provenance is not None else {}),
    }
  return {
    "score_infos": infos,
    "models": models,
    "training": dataclasses.asdict(spec.training),
    "config": pipeline_config,
    "validation": validation_summary(models, dataset, epoch=epochs),
    "proxy_accuracy": held_out_accuracy(models, dataset),
    "shard": part,
  }


def held_out_accuracy(models, dataset: Dataset) -> dict | None:
  """Each proxy's accuracy on data it did not train on (the validation split,
  else the test split), with the majority-class rate; warns when the proxies
  are near it. None without either split."""
  from pruning.evaluation import proxy_accuracy, warn_if_weak

  if "proxy_accuracy" in models.extras:  # measured once per training (a streamed manifest asks twice)
    return models.extras["proxy_accuracy"]
  record = None
  for name, split in (("validation", dataset.validation), ("test", dataset.test)):
    if split is not None and len(split):
      record = proxy_accuracy(models.predict(split.x), split.y, split=name)
      warn_if_weak(record, use="scores")
      break
  models.extras["proxy_accuracy"] = record
  return record


def validation_summary(models, dataset: Dataset, *, epoch: int) -> dict | None:
  """Per-class recall of the proxies on the validation split, averaged over seeds:
  what the `drop` class rule shares the budget by. None without a validation split."""
  split = dataset.validation
  if split is None:
    return None
  predictions = models.predict(split.x)
  counts = np.bincount(split.y, minlength=dataset.num_classes)
  recall: list[float | None] = []
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
