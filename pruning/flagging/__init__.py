"""Which labels are wrong: a decision, with its evidence, from a scored manifest.

    flagged = pruning.flag_label_issues(manifest, dataset)   # method="confident_learning"
    flagged.table[flagged.table.is_suspect]                   # given and likely labels, score, cutoff

Three methods, each retraining the manifest's own proxies (its recorded
model, options, epochs and seeds):

- `confident_learning` (the default; Northcutt et al., 2021): out-of-fold
  probabilities from K folds (`folds`, 5 as cleanlab) of the manifest's
  proxies, every seed of a fold averaged, the calibrated confident joint's
  estimate of the wrong labels per class, and its `prune_by_noise_rate`
  rule for which examples (what cleanlab's `find_label_issues` does with
  the probabilities it is given).
- `aum_threshold` (Pleiss et al., 2020): two proxy trainings, each with a
  disjoint random N/(C+1) of the examples moved to a fake class; the
  `percentile` (99) of those threshold samples' AUM is the cutoff, and
  every example whose AUM is at or below it is flagged. With `per_class`,
  at most confident learning's estimated count is flagged in each class
  (the lowest AUM first), which keeps a rare class from being flagged
  wholesale.
- `ranked`: confident learning's estimated count per class, filled with
  each class's hardest examples by a manifest score (`score`: `aum` when
  the manifest has it, else `el2n`, else `loss`).

Which is best depends on the noise (STUDIES.md, section 10): on symmetric
noise `ranked` and `aum_threshold` with `per_class` lead; on class-dependent
(pair) noise `confident_learning` does; on long-tailed data
`aum_threshold` with `per_class`. `confident_learning` is the default
because it never fell far behind.

The result is the manifest with columns `is_suspect`, `likely_label` (the
out-of-fold argmax; for `aum_threshold` without folds, the proxies'),
`suspect_evidence` (the value the decision read: the margin, AUM or score)
and `suspect_cutoff` (the flagged class's cutoff), and `flagging` in the
provenance: the method, its parameters and the estimated number of wrong
labels per class.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError, unknown_name_error
from pruning.evaluation import proxy_accuracy, warn_if_weak
from pruning.flagging import confident
from pruning.flagging.training import aum_with_threshold_samples, out_of_fold_probabilities
from pruning.manifest import Manifest
from pruning.plugins import check_loaded
from pruning.scores.run import ProxySpec

FLAG_METHODS = ("ranked", "confident_learning", "aum_threshold")
FLAG_DESCRIPTIONS = {
  "ranked": "confident learning's estimated count per class, filled with the class's hardest by a score",
  "confident_learning": "Northcutt et al.: out-of-fold confident joint, prune by noise rate (cleanlab's rule)",
  "aum_threshold": "Pleiss et al.: AUM at or below the threshold samples' percentile (--per-class caps it)",
}
RANKING_SCORES = ("aum", "el2n", "loss")
SPLITS = ("train", "all")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlagOptions:
  """How to flag: see the module doc."""

  method: str = "confident_learning"
  folds: int = 5
  percentile: float = 99.0
  score: str | None = None
  per_class: bool = False
  seed: int = 0
  split: str = "train"  # "all": the test split's labels are examined too (confident learning)

  def __post_init__(self):
    from pruning.runtime.validation import check_fields, check_seed

    check_fields(self, "flag")
    check_seed(self.seed, "flag")
    if self.method not in FLAG_METHODS:
      raise unknown_name_error("flagging method", str(self.method), FLAG_METHODS)
    p = self.percentile
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 100:
      raise UserError(f"percentile {p!r} must be a number strictly between 0 and 100 (Pleiss et al. use 99)")
    if self.split not in SPLITS:
      raise unknown_name_error("flag split", str(self.split), SPLITS)
    if isinstance(self.folds, bool) or not isinstance(self.folds, int) or not 2 <= self.folds <= 20:
      raise UserError(f"folds {self.folds!r} must be a whole number from 2 to 20 (cleanlab's default is 5)")


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


def recorded_proxy_spec(manifest: Manifest) -> ProxySpec:
  """The proxies a manifest's recorded config trained (what flagging trains again)."""
  recorded = manifest.provenance.get("config")
  if not isinstance(recorded, dict) or not recorded:
    raise UserError(
      "the manifest records no config, so its proxies cannot be trained again: score it with"
      " `pruning score` or `pruning run`"
    )
  plugins = recorded.get("plugins") or []
  check_loaded(plugins if isinstance(plugins, list) else [plugins], source="the manifest's provenance")
  return ProxySpec.from_recorded_config(recorded, source="the manifest's provenance")


def _most_suspicious(labels: np.ndarray, key: np.ndarray, counts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
  """Per class c, the `round(counts[c])` candidates of class c with the largest
  `key` (all its candidates, if it has fewer): an (N,) mask."""
  chosen = np.zeros(len(labels), bool)
  for c, count in enumerate(counts):
    members = np.flatnonzero(candidates & (labels == c))
    chosen[members[np.argsort(-key[members], kind="stable")[: int(round(count))]]] = True
  return chosen


def flag_label_issues(
  manifest: Manifest, dataset: Dataset, *, options: FlagOptions | None = None, progress: bool = True
) -> Manifest:
  """The manifest with `is_suspect` and its evidence (see the module doc)."""
  options = options or FlagOptions()
  rows = manifest.dataset_rows(dataset)
  if len(rows) != len(dataset.train):
    raise UserError("flag the whole manifest, not a subset: flagging estimates noise over every training example")
  spec = recorded_proxy_spec(manifest)
  labels = dataset.train.y
  score = ranking_score(manifest, options.score) if options.method == "ranked" else None
  n, num_classes = len(labels), dataset.num_classes
  evidence = np.zeros(n)
  cutoff_per_class = np.full(num_classes, np.nan)
  record: dict = {"method": options.method}
  probabilities = test_probabilities = None
  examine_test = options.split == "all" and dataset.test is not None and len(dataset.test) > 0
  if options.method in ("ranked", "confident_learning") or options.per_class or examine_test:
    found = out_of_fold_probabilities(
      dataset, spec, folds=options.folds, seed=options.seed, progress=progress, test=examine_test
    )
    probabilities, test_probabilities = found if examine_test else (found, None)
    estimated = confident.estimated_issues(labels, probabilities)
    record.update(folds=options.folds, seed=options.seed, estimated_per_class=np.round(estimated, 2).tolist())
    # How well held-out proxies predict the given labels: near the majority rate, the flags are noise.
    record["out_of_fold_accuracy"] = proxy_accuracy(probabilities.argmax(axis=1)[None], labels, split="held-out folds")
    warn_if_weak(record["out_of_fold_accuracy"], use="flags")
  if options.method == "confident_learning":
    assert probabilities is not None
    suspect = confident.prune_by_noise_rate(labels, probabilities)
    given = probabilities[np.arange(n), labels]
    evidence = (probabilities.max(axis=1) - given).astype(np.float64)  # the margin the rule orders by
    record["rule"] = "prune_by_noise_rate"
  elif options.method == "ranked":
    assert probabilities is not None
    by_row = manifest.table.set_index("index")[score].reindex(np.arange(n)).to_numpy()
    info = manifest.score_info(score)  # type: ignore[arg-type]  # a score name once chosen
    hardness = by_row if info["harder"] == "higher" else -by_row
    suspect = _most_suspicious(labels, hardness, estimated, np.ones(n, bool))
    for c in range(num_classes):
      chosen = np.flatnonzero(suspect & (labels == c))
      if len(chosen):  # the class's cutoff: its least hard flagged example
        cutoff_per_class[c] = by_row[chosen[np.argmin(hardness[chosen])]]
    evidence = by_row
    record.update(score=score, harder=info["harder"])
  else:
    aum, threshold_aum = aum_with_threshold_samples(dataset, spec, seed=options.seed, progress=progress)
    cutoff = float(np.percentile(threshold_aum, options.percentile))
    suspect = aum <= cutoff
    cutoff_per_class[:] = cutoff
    if options.per_class:  # at most the estimated count per class, the lowest AUM first
      suspect = _most_suspicious(labels, -aum, estimated, suspect)
    evidence = aum
    record.update(
      percentile=options.percentile,
      cutoff=cutoff,
      threshold_samples=len(threshold_aum),
      per_class=options.per_class,
      seed=options.seed,
    )
  if probabilities is not None:
    likely = probabilities.argmax(axis=1)
  else:
    likely = labels.copy()
  flagged_counts = np.bincount(labels[suspect], minlength=num_classes)
  seeds = [int(seed) for seed in spec.seeds]  # type: ignore[union-attr]  # a tuple once the spec is built
  record.update(flagged=int(suspect.sum()), flagged_per_class=flagged_counts.tolist(), proxy_seeds=seeds)
  table = manifest.table.copy()
  order = table["index"].to_numpy()
  table["is_suspect"] = suspect[order]
  table["likely_label"] = likely[order].astype(np.int64)
  table["suspect_evidence"] = evidence[order].astype(np.float64)
  table["suspect_cutoff"] = cutoff_per_class[labels[order]].astype(np.float64)
  record["split"] = options.split
  if examine_test and test_probabilities is not None and dataset.test is not None:
    record["test"] = test_suspects(dataset.test, test_probabilities, num_classes)
  provenance = copy.deepcopy(manifest.provenance)
  provenance["flagging"] = record
  return Manifest(table=table, provenance=provenance)


def test_suspects(split, probabilities: np.ndarray, num_classes: int) -> dict:
  """Confident learning on a test split's labels, from probabilities of proxies
  that never saw it: how many look wrong, per class, and each suspect (its
  id, given and likely label, and the margin it was flagged by)."""
  labels = np.asarray(split.y)
  suspect = confident.prune_by_noise_rate(labels, probabilities)
  rows = np.flatnonzero(suspect)
  margin = probabilities.max(axis=1) - probabilities[np.arange(len(labels)), labels]
  order = rows[np.argsort(-margin[rows], kind="stable")]
  return {
    "num_examples": int(len(labels)),
    "flagged": int(len(rows)),
    "flagged_per_class": np.bincount(labels[rows], minlength=num_classes).tolist(),
    "accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
    "suspects": [
      {
        "example_id": str(split.ids[i]),
        "given_label": int(labels[i]),
        "likely_label": int(probabilities[i].argmax()),
        "evidence": float(margin[i]),
      }
      for i in order
    ],
  }


__all__ = [
  "FLAG_DESCRIPTIONS",
  "FLAG_METHODS",
  "SPLITS",
  "FlagOptions",
  "flag_label_issues",
  "ranking_score",
  "recorded_proxy_spec",
  "test_suspects",
]
