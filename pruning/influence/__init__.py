"""Which training examples made a prediction: TracIn from a manifest's proxies.

    result = pruning.influence.explain(manifest, dataset, test="errors", top=10)
    result.table        # test id, train id, influence, rank, proponent/opponent
    result.totals       # per training example, summed over the explained test examples

The proxies are trained again from the spec the manifest records (model,
options, seeds, training: bit for bit the scored proxies on the same
machine), keeping the states of the TracIn checkpoints: `tracin_checkpoints`
evenly spaced epochs (the manifest's own setting unless given). Influence is
`pruning.scores.tracin.influence_matrix`: exact over every parameter by ghost
inner products, or LoGra-projected with `projection=k`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.scores.tracin import (
  DEFAULT_TRACIN_CHECKPOINTS,
  INFLUENCE_MEMORY_BYTES,
  epoch_learning_rates,
  influence_matrix,
  tracin_epochs,
)
from pruning.training import ModelSpec, TrainData, TrainedModels, train_models

SPLITS = ("test", "validation", "train")


@dataclasses.dataclass
class Influence:
  """TracIn of every training example on each explained test example.

  `values` (N train, M test), averaged over the proxy seeds; `test_rows`
  the explained rows of `split`; `predictions` the proxies' (mean
  probability) classes for them; `checkpoints` and `learning_rates` what
  was summed over."""

  values: np.ndarray
  train_ids: np.ndarray
  train_labels: np.ndarray
  split: str
  test_rows: np.ndarray
  test_ids: np.ndarray
  test_labels: np.ndarray
  predictions: np.ndarray
  checkpoints: list[int]
  learning_rates: list[float]
  projection: int | None = None

  def table(self, top: int = 10) -> pd.DataFrame:
    """Each test example's `top` proponents (largest positive influence) and
    opponents (most negative), ranked from 1: one row per pair."""
    n = len(self.train_ids)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= n:
      raise UserError(f"--top {top!r} must be a whole number from 1 to the {n} training examples")
    frames = []
    for column in range(self.values.shape[1]):
      values = self.values[:, column]
      order = np.argsort(-values, kind="stable")
      for direction, rows in (("proponent", order[:top]), ("opponent", order[::-1][:top])):
        frames.append(
          pd.DataFrame(
            {
              "test_id": self.test_ids[column],
              "test_label": self.test_labels[column],
              "test_prediction": self.predictions[column],
              "direction": direction,
              "rank": np.arange(1, len(rows) + 1),
              "train_id": self.train_ids[rows],
              "train_label": self.train_labels[rows],
              "influence": values[rows],
            }
          )
        )
    return pd.concat(frames, ignore_index=True)

  @property
  def totals(self) -> pd.Series:
    """Per training example, TracIn summed over the explained test examples
    (positive: it lowered their loss on the whole), indexed by example id."""
    return pd.Series(self.values.sum(axis=1), index=pd.Index(self.train_ids, name="example_id"), name="influence")


def recorded_checkpoints(manifest: Manifest) -> int:
  """The `tracin_checkpoints` a manifest's config records (the default if none)."""
  config = manifest.provenance.get("config") or {}
  proxy = config.get("proxy") if isinstance(config, dict) else None
  value = proxy.get("tracin_checkpoints") if isinstance(proxy, dict) else None
  return DEFAULT_TRACIN_CHECKPOINTS if value is None else int(value)


def explain(
  manifest: Manifest,
  dataset,
  *,
  test: str | Sequence[str] = "errors",
  split: str = "test",
  checkpoints: int | None = None,
  projection: int | None = None,
  memory_bytes: int = INFLUENCE_MEMORY_BYTES,
  progress: bool = True,
) -> Influence:
  """TracIn of `dataset`'s training split on examples of `split`:
  `test="errors"` the proxies' wrong predictions, `"all"` every example, or
  a list of example ids."""
  from pruning.flagging import recorded_proxy_spec

  if split not in SPLITS:
    raise UserError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
  target = getattr(dataset, split, None)
  if target is None or len(target) == 0:
    raise UserError(f"the data has no {split} split to explain: give --split with one it has, or --holdout 0.2")
  if len(manifest.dataset_rows(dataset)) != len(dataset.train):
    raise UserError("explain with the manifest of the whole training split, not of a subset")
  rows = None if isinstance(test, str) and test == "errors" else _chosen_rows(test, target)  # checked before training
  spec: ModelSpec = recorded_proxy_spec(manifest).for_data(dataset)
  count = recorded_checkpoints(manifest) if checkpoints is None else checkpoints
  epochs = tracin_epochs(spec.training.epochs, count)
  models = train_models(
    TrainData.from_dataset(dataset),
    spec,
    checkpoint_epochs=epochs,
    dynamics_window=None,
    desc="proxy training (TracIn checkpoints)",
    progress=progress,
  )
  _check_reproduced(manifest, models, dataset)
  rates = epoch_learning_rates(spec.training, models.num_steps, epochs)
  probabilities = _mean_probabilities(models, target.x, progress=progress)
  predictions = probabilities.argmax(-1)
  if rows is None:  # the proxies' errors
    rows = np.flatnonzero(predictions != np.asarray(target.y))
    if len(rows) == 0:
      raise UserError("the proxies make no errors on this split: explain chosen examples (--test ID,...) instead")
  values = influence_matrix(
    models,
    dataset.train.x,
    dataset.train.y,
    _take(target.x, rows),
    np.asarray(target.y)[rows],
    epochs=epochs,
    learning_rates=rates,
    projection=projection,
    memory_bytes=memory_bytes,
    progress=progress,
  )
  return Influence(
    values=values,
    train_ids=np.asarray(dataset.train.ids),
    train_labels=np.asarray(dataset.train.y),
    split=split,
    test_rows=rows,
    test_ids=np.asarray(target.ids)[rows],
    test_labels=np.asarray(target.y)[rows],
    predictions=predictions[rows],
    checkpoints=epochs,
    learning_rates=rates,
    projection=projection,
  )


def write_table(table: pd.DataFrame, path, *, overwrite: bool):
  """`table` to `path` (.csv, its text cells escaped for spreadsheets, or Parquet), atomically."""
  from pruning.runtime.atomic import atomic_path
  from pruning.runtime.spreadsheet import escape_formulas

  with atomic_path(path, overwrite=overwrite) as tmp:
    if str(path).endswith(".csv"):
      escape_formulas(table).to_csv(tmp, index=False)
    else:
      table.to_parquet(tmp, index=False)


def _check_reproduced(manifest: Manifest, models: TrainedModels, dataset) -> None:
  """Warns when the proxies trained again are not the scored ones (another machine or
  version): their end-of-training EL2N, when the manifest has it, must match."""
  import warnings

  from pruning.scores import compute_scores

  if "el2n" not in manifest.scores:
    return
  again = compute_scores(models, dataset.train.x, dataset.train.y, ["el2n"], progress=False)["el2n"].mean(0)
  scored = manifest.table["el2n"].to_numpy()[np.argsort(manifest.dataset_rows(dataset))]
  if not np.allclose(again, scored, rtol=1e-4, atol=1e-5):
    warnings.warn(
      "pruning: warning: the proxies trained again differ from the scored ones (another machine or version?):"
      " influence describes the new ones",
      stacklevel=3,
    )


def _mean_probabilities(models: TrainedModels, x, *, progress: bool) -> np.ndarray:
  logits = models.logits(x, progress=progress)
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return (shifted / shifted.sum(-1, keepdims=True)).mean(0)


def _take(x, rows: np.ndarray):
  return x[rows] if isinstance(x, np.ndarray) else np.asarray([x[int(r)] for r in rows])


def _chosen_rows(test, split) -> np.ndarray:
  if isinstance(test, str) and test == "all":
    return np.arange(len(split.y))
  wanted = [test] if isinstance(test, str) else list(test)
  index = {str(i): r for r, i in enumerate(np.asarray(split.ids))}
  missing = [str(i) for i in wanted if str(i) not in index]
  if missing:
    raise UserError(f"test ids not in the split: {', '.join(missing[:5])}: give ids from its example_id column")
  return np.asarray([index[str(i)] for i in wanted], np.int64)


__all__ = ["SPLITS", "Influence", "explain", "recorded_checkpoints", "write_table"]
