"""Which training examples made a prediction: TracIn from a manifest's proxies.

    result = pruning.influence.explain(manifest, dataset, test="errors", top=10)
    result.table        # test id, train id, influence, rank, proponent/opponent
    result.totals       # per training example, summed over the explained test examples

The TracIn checkpoints are `tracin_checkpoints` evenly spaced epochs of the
proxies (the manifest's own setting unless given). A score job run with
`keep_checkpoints` kept them in `$PRUNING_CACHE_DIR/proxy-checkpoints`, and
they are read from there; otherwise the proxies are trained again from the
spec the manifest records (model, options, seeds, training: bit for bit the
scored proxies on the same machine) and kept there for the next call. A kept
entry of another run, or one that cannot be read, is discarded with a
warning and trained again, never used. Influence is
`pruning.scores.tracin.influence_matrix`: exact over every parameter by ghost
inner products, or LoGra-projected with `projection=k`, and with
`fisher_damping` through the inverse of the projected gradients' damped
Fisher (`pruning.scores.fisher_influence`; it predicts retraining better:
STUDIES.md, study 12).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pruning.data.streaming import take_rows
from pruning.errors import UserError
from pruning.evaluation import softmax
from pruning.manifest import Manifest
from pruning.scores.tracin import (
  DEFAULT_TRACIN_CHECKPOINTS,
  INFLUENCE_MEMORY_BYTES,
  check_fisher_damping,
  epoch_learning_rates,
  influence_matrix,
  kept_checkpoints,
  tracin_epochs,
)
from pruning.training import ModelSpec, TrainData, TrainedModels, train_models

SPLITS = ("test", "validation", "train")
TARGETS = ("label", "prediction")


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
  fisher_damping: float | None = None
  target: str = "label"
  kept: bool = False  # the checkpoints were read from the kept ones, not trained again

  def table(self, top: int = 10) -> pd.DataFrame:
    """Each test example's `top` proponents (largest positive influence) and
    opponents (most negative), ranked from 1: one row per pair."""
    check_top(top, len(self.train_ids))
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

  def explained(self, column: int, dataset, *, top: int = 6) -> pd.DataFrame:
    """One explained example's proponents and opponents with what they are:
    given label, class name, flipped label (`is_noisy`) and text when the
    data has them."""
    table = self.table(top)
    table = table[table["test_id"] == self.test_ids[column]].reset_index(drop=True)
    rows = id_rows(self.train_ids, table["train_id"])
    names = list(dataset.class_names) if dataset.class_names else None
    if names:
      table["train_class"] = [names[int(c)] for c in table["train_label"]]
    if dataset.train.is_noisy is not None:
      table["is_noisy"] = np.asarray(dataset.train.is_noisy)[rows]
    if dataset.train.text is not None:
      table["text"] = [" / ".join(np.atleast_1d(t)) for t in np.asarray(dataset.train.text, dtype=object)[rows]]
    return table

  def plot(self, column: int, dataset, *, top: int = 6, path=None, overwrite: bool = False):
    """Image data: the explained test example, its `top` proponents (top
    row) and opponents (bottom row), titled with their given labels (a
    flipped label marked `!`)."""
    from pruning.plots import finish_figure, pyplot

    if dataset.is_text:
      raise UserError("text examples are sentences: show them with result.explained(column, dataset)")
    table = self.explained(column, dataset, top=top)
    target = getattr(dataset, self.split)
    plt = pyplot()
    figure, axes = plt.subplots(2, top + 1, figsize=(1.5 * (top + 1), 4.4), squeeze=False)
    image = lambda x: np.asarray(x, np.float64).reshape(x.shape[0], -1) if np.ndim(x) == 1 else x  # noqa: E731
    shown = image(np.asarray(target.x[int(self.test_rows[column])]))
    axes[0, 0].imshow(shown[..., 0] if shown.ndim == 3 else shown, cmap="gray")
    axes[0, 0].set_title(f"{self.test_ids[column]}\nlabel {self.test_labels[column]}, said {self.predictions[column]}")
    axes[1, 0].set_visible(False)
    table["train_row"] = id_rows(self.train_ids, table["train_id"])
    for line, direction in enumerate(("proponent", "opponent")):
      part = table[table["direction"] == direction]
      for axis, row in zip(axes[line, 1:], part.itertuples()):
        x = image(np.asarray(dataset.train.x[row.train_row]))
        axis.imshow(x[..., 0] if x.ndim == 3 else x, cmap="gray")
        flipped = "!" if getattr(row, "is_noisy", False) else ""
        axis.set_title(f"{direction[:3]} {row.rank}: {row.train_label}{flipped}\n{row.influence:.2g}", fontsize=8)
    for axis in axes.ravel():
      axis.set_xticks([])
      axis.set_yticks([])
    figure.tight_layout()
    return finish_figure(figure, path, overwrite=overwrite)

  @property
  def totals(self) -> pd.Series:
    """Per training example, TracIn summed over the explained test examples
    (positive: it lowered their loss on the whole), indexed by example id."""
    return pd.Series(self.values.sum(axis=1), index=pd.Index(self.train_ids, name="example_id"), name="influence")


def check_top(top, examples: int) -> None:
  """Refuses a `--top` that is not 1 to the number of training examples."""
  if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= examples:
    raise UserError(f"--top {top!r} must be a whole number from 1 to the {examples} training examples")


def id_rows(ids, wanted) -> np.ndarray:
  """The rows of `ids` holding each of `wanted` (example ids, compared as text); missing ones refused by name."""
  index = {str(i): r for r, i in enumerate(np.asarray(ids))}
  missing = [str(i) for i in wanted if str(i) not in index]
  if missing:
    raise UserError(f"test ids not in the split: {', '.join(missing[:5])}: give ids from its example_id column")
  return np.asarray([index[str(i)] for i in wanted], np.int64)


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
  target: str = "label",
  checkpoints: int | None = None,
  projection: int | None = None,
  fisher_damping: float | None = None,
  memory_bytes: int = INFLUENCE_MEMORY_BYTES,
  progress: bool = True,
) -> Influence:
  """TracIn of `dataset`'s training split on examples of `split`:
  `test="errors"` the proxies' wrong predictions, `"all"` every example, or
  a list of example ids. `target="label"` differentiates each explained
  example's loss at its label (TracIn as published: proponents lowered it,
  so for a wrong prediction the opponents are what pulled it away), and
  `"prediction"` its loss at the proxies' predicted class (proponents are
  what made the prediction)."""
  from pruning.flagging import recorded_proxy_spec

  if target not in TARGETS:
    raise UserError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
  check_fisher_damping(fisher_damping, projection)
  if split not in SPLITS:
    raise UserError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
  examples = getattr(dataset, split, None)
  if examples is None or len(examples) == 0:
    raise UserError(f"the data has no {split} split to explain: give --split with one it has, or --holdout 0.2")
  if len(manifest.dataset_rows(dataset)) != len(dataset.train):
    raise UserError("explain with the manifest of the whole training split, not of a subset")
  rows = None if isinstance(test, str) and test == "errors" else _chosen_rows(test, examples)  # checked before training
  spec: ModelSpec = recorded_proxy_spec(manifest).for_data(dataset)
  count = recorded_checkpoints(manifest) if checkpoints is None else checkpoints
  epochs = tracin_epochs(spec.training.epochs, count)
  kept = kept_checkpoints(dataset, spec, epochs)
  models = train_models(
    TrainData.from_dataset(dataset),
    spec,
    checkpoint_epochs=epochs,
    dynamics_window=None,
    checkpointer=kept.checkpointer,  # a kept run resumes finished; a new one is saved at its end
    desc="proxy training (TracIn checkpoints)",
    progress=progress,
  )
  _check_reproduced(manifest, models, dataset)
  rates = epoch_learning_rates(spec.training, models.num_steps, epochs)
  predictions = softmax(models.logits(examples.x, progress=progress)).mean(0).argmax(-1)
  if rows is None:  # the proxies' errors
    rows = np.flatnonzero(predictions != np.asarray(examples.y))
    if len(rows) == 0:
      raise UserError("the proxies make no errors on this split: explain chosen examples (--test ID,...) instead")
  values = influence_matrix(
    models,
    dataset.train.x,
    dataset.train.y,
    take_rows(examples.x, rows),
    (np.asarray(examples.y) if target == "label" else predictions)[rows],
    epochs=epochs,
    learning_rates=rates,
    projection=projection,
    damping=fisher_damping,
    memory_bytes=memory_bytes,
    progress=progress,
  )
  return Influence(
    values=values,
    train_ids=np.asarray(dataset.train.ids),
    train_labels=np.asarray(dataset.train.y),
    split=split,
    test_rows=rows,
    test_ids=np.asarray(examples.ids)[rows],
    test_labels=np.asarray(examples.y)[rows],
    predictions=predictions[rows],
    checkpoints=epochs,
    learning_rates=rates,
    projection=projection,
    fisher_damping=fisher_damping,
    target=target,
    kept=models.extras["resumed_epoch"] == max(epochs),  # resumed finished: read, not trained
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


def _chosen_rows(test, split) -> np.ndarray:
  if isinstance(test, str) and test == "all":
    return np.arange(len(split.y))
  return id_rows(split.ids, [test] if isinstance(test, str) else list(test))


__all__ = ["SPLITS", "TARGETS", "Influence", "check_top", "explain", "id_rows", "recorded_checkpoints", "write_table"]
