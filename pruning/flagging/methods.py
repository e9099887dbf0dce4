"""Flagging methods: a `Registry` of rules that decide which labels are wrong.

A method is a function of one `FlagContext` (the manifest, its dataset, the
proxies it records, the options) that returns `Flags`: which examples are
suspects, the evidence each decision read and each class's cutoff. The
context trains the out-of-fold proxies a method asks for once
(`context.out_of_fold()`), and records what they estimate:

    from pruning.flagging import Flags, register_flagging_method

    @register_flagging_method("low_margin", description="out-of-fold margin below 0.5")
    def low_margin(context):
      p = context.out_of_fold()
      margin = p.max(axis=1) - p[np.arange(len(p)), context.labels]
      return Flags(suspect=margin > 0.5, evidence=margin, record={"threshold": 0.5})

The three built-in methods are described in `pruning.flagging`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError
from pruning.evaluation import proxy_accuracy, warn_if_weak
from pruning.flagging import confident
from pruning.flagging.options import FLAGGING_METHODS, FlagOptions
from pruning.flagging.training import aum_with_threshold_samples, out_of_fold_probabilities
from pruning.manifest import Manifest
from pruning.training import ModelSpec

RANKING_SCORES = ("aum", "el2n", "loss")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Flags:
  """A method's decision over the N training examples: `suspect` (N,) bool,
  `evidence` (N,) the value it read, `cutoff_per_class` (C,) (NaN where a
  method has none) and `record`, what goes in the provenance's `flagging`."""

  suspect: np.ndarray
  evidence: np.ndarray
  cutoff_per_class: np.ndarray | None = None
  record: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FlagContext:
  """What a flagging method reads. `out_of_fold()` trains the manifest's
  proxies in K folds once and returns every training example's (N, C)
  probabilities from proxies that never saw it."""

  manifest: Manifest
  dataset: Dataset
  spec: ModelSpec
  options: FlagOptions
  progress: bool = True
  examine_test: bool = False
  probabilities: np.ndarray | None = None
  test_probabilities: np.ndarray | None = None
  estimated: np.ndarray | None = None  # confident learning's wrong labels per class, from the folds
  record: dict = dataclasses.field(default_factory=dict)

  @property
  def labels(self) -> np.ndarray:
    return self.dataset.train.y

  @property
  def num_classes(self) -> int:
    return self.dataset.num_classes

  def out_of_fold(self) -> np.ndarray:
    if self.probabilities is None:
      options = self.options
      found = out_of_fold_probabilities(
        self.dataset,
        self.spec,
        folds=options.folds,
        seed=options.seed,
        progress=self.progress,
        test=self.examine_test,
      )
      self.probabilities, self.test_probabilities = found if self.examine_test else (found, None)
      self.estimated = confident.estimated_issues(self.labels, self.probabilities)
      estimated_per_class = np.round(self.estimated, 2).tolist()
      self.record.update(folds=options.folds, seed=options.seed, estimated_per_class=estimated_per_class)
      # How well held-out proxies predict the given labels: near the majority rate, the flags are noise.
      accuracy = proxy_accuracy(self.probabilities.argmax(axis=1)[None], self.labels, split="held-out folds")
      self.record["out_of_fold_accuracy"] = accuracy
      warn_if_weak(accuracy, use="flags")
    return self.probabilities

  def estimated_issues(self) -> np.ndarray:
    """Confident learning's estimate of the wrong labels in each class (C,), from `out_of_fold()`."""
    self.out_of_fold()
    assert self.estimated is not None  # set with the probabilities
    return self.estimated


FlagMethod = Callable[[FlagContext], Flags]


def register_flagging_method(name: str, method: Any = None, *, description: str = "") -> Any:
  """Registers a flagging method (a function of a `FlagContext` returning `Flags`), or decorates one."""
  return FLAGGING_METHODS.register(name, method, description=description)


def most_suspicious(labels: np.ndarray, key: np.ndarray, counts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
  """Per class c, the `round(counts[c])` candidates of class c with the largest
  `key` (all its candidates, if it has fewer): an (N,) mask."""
  chosen = np.zeros(len(labels), bool)
  for c, count in enumerate(counts):
    members = np.flatnonzero(candidates & (labels == c))
    chosen[members[np.argsort(-key[members], kind="stable")[: int(round(count))]]] = True
  return chosen


def ranking_score(manifest: Manifest, name: str | None) -> str:
  """The score `ranked` orders a class by: `name`, else the first of `RANKING_SCORES` the manifest has."""
  if name is not None:
    manifest.score_info(name)
    return name
  for candidate in RANKING_SCORES:
    if candidate in manifest.scores:
      return candidate
  raise UserError(
    f"the manifest has none of the scores that rank wrong labels ({', '.join(RANKING_SCORES)}): score it with"
    " --score aum (or el2n), or flag with --method confident_learning"
  )


@register_flagging_method(
  "ranked", description="confident learning's estimated count per class, filled with the class's hardest by a score"
)
def ranked(context: FlagContext) -> Flags:
  score = ranking_score(context.manifest, context.options.score)
  estimated = context.estimated_issues()
  labels, n = context.labels, len(context.labels)
  by_row = context.manifest.table.set_index("index")[score].reindex(np.arange(n)).to_numpy()
  info = context.manifest.score_info(score)
  hardness = by_row if info["harder"] == "higher" else -by_row
  suspect = most_suspicious(labels, hardness, estimated, np.ones(n, bool))
  cutoff_per_class = np.full(context.num_classes, np.nan)
  for c in range(context.num_classes):
    chosen = np.flatnonzero(suspect & (labels == c))
    if len(chosen):  # the class's cutoff: its least hard flagged example
      cutoff_per_class[c] = by_row[chosen[np.argmin(hardness[chosen])]]
  record = {"score": score, "harder": info["harder"]}
  return Flags(suspect=suspect, evidence=by_row, cutoff_per_class=cutoff_per_class, record=record)


@register_flagging_method(
  "confident_learning",
  description="Northcutt et al.: out-of-fold confident joint, prune by noise rate (cleanlab's rule)",
)
def confident_learning(context: FlagContext) -> Flags:
  probabilities, labels = context.out_of_fold(), context.labels
  suspect = confident.prune_by_noise_rate(labels, probabilities)
  given = probabilities[np.arange(len(labels)), labels]
  margin = (probabilities.max(axis=1) - given).astype(np.float64)  # the margin the rule orders by
  return Flags(suspect=suspect, evidence=margin, record={"rule": "prune_by_noise_rate"})


@register_flagging_method(
  "aum_threshold",
  description="Pleiss et al.: AUM at or below the threshold samples' percentile (--per-class caps it)",
)
def aum_threshold(context: FlagContext) -> Flags:
  options = context.options
  estimated = context.estimated_issues() if options.per_class else None
  aum, threshold_aum = aum_with_threshold_samples(
    context.dataset, context.spec, seed=options.seed, progress=context.progress
  )
  cutoff = float(np.percentile(threshold_aum, options.percentile))
  suspect = aum <= cutoff
  if estimated is not None:  # at most the estimated count per class, the lowest AUM first
    suspect = most_suspicious(context.labels, -aum, estimated, suspect)
  record = {
    "percentile": options.percentile,
    "cutoff": cutoff,
    "threshold_samples": len(threshold_aum),
    "per_class": options.per_class,
    "seed": options.seed,
  }
  return Flags(suspect=suspect, evidence=aum, cutoff_per_class=np.full(context.num_classes, cutoff), record=record)


__all__ = [
  "FLAGGING_METHODS",
  "RANKING_SCORES",
  "FlagContext",
  "FlagMethod",
  "Flags",
  "most_suspicious",
  "ranking_score",
  "register_flagging_method",
]
