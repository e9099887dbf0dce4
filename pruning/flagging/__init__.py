"""Which labels are wrong: a decision, with its evidence, from a scored manifest.

    flagged = pruning.flag_label_issues(manifest, dataset)   # method="confident_learning"
    flagged.table[flagged.table.is_suspect]                   # given and likely labels, score, cutoff

Three built-in methods (a plugin adds more with
`register_flagging_method`: see `pruning.flagging.methods`), each retraining
the manifest's own proxies (the `ModelSpec` it records: model, options,
training and seeds):

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

import numpy as np

from pruning.data.dataset import Dataset
from pruning.errors import UserError
from pruning.flagging import confident
from pruning.flagging.methods import (
  RANKING_SCORES,
  FlagContext,
  FlagMethod,
  Flags,
  ranking_score,
  register_flagging_method,
)
from pruning.flagging.options import FLAGGING_METHODS, SPLITS, FlagOptions
from pruning.manifest import Manifest
from pruning.plugins import check_loaded
from pruning.training import ModelSpec


def recorded_proxy_spec(manifest: Manifest) -> ModelSpec:
  """The proxies a manifest records (its model, options, seeds and training:
  what flagging trains again), once the plugins its config names are loaded."""
  recorded = manifest.provenance.get("config")
  plugins = (recorded.get("plugins") or []) if isinstance(recorded, dict) else []
  check_loaded(plugins if isinstance(plugins, list) else [plugins], source="the manifest's provenance")
  return ModelSpec.from_provenance(manifest.provenance)


def flag_label_issues(
  manifest: Manifest, dataset: Dataset, *, options: FlagOptions | None = None, progress: bool = True
) -> Manifest:
  """The manifest with `is_suspect` and its evidence (see the module doc)."""
  options = options or FlagOptions()
  method: FlagMethod = FLAGGING_METHODS.get(options.method)
  rows = manifest.dataset_rows(dataset)
  if len(rows) != len(dataset.train):
    raise UserError("flag the whole manifest, not a subset: flagging estimates noise over every training example")
  examine_test = options.split == "all" and dataset.test is not None and len(dataset.test) > 0
  context = FlagContext(
    manifest=manifest,
    dataset=dataset,
    spec=recorded_proxy_spec(manifest),
    options=options,
    progress=progress,
    examine_test=examine_test,
  )
  if examine_test:  # the test split is judged by the fold proxies, whichever method flags the training split
    context.out_of_fold()
  flags = method(context)
  labels, num_classes = context.labels, context.num_classes
  suspect = np.asarray(flags.suspect, dtype=bool)
  evidence = np.asarray(flags.evidence, dtype=np.float64)
  if suspect.shape != labels.shape or evidence.shape != labels.shape:
    raise ValueError(f"flagging method {options.method!r} must return one suspect flag and evidence per example")
  cutoff_per_class = np.full(num_classes, np.nan)
  if flags.cutoff_per_class is not None:
    cutoff_per_class[:] = flags.cutoff_per_class
  likely = context.probabilities.argmax(axis=1) if context.probabilities is not None else labels.copy()
  record: dict = {"method": options.method, **context.record, **flags.record}
  flagged_counts = np.bincount(labels[suspect], minlength=num_classes)
  seeds = [int(seed) for seed in context.spec.seeds]
  record.update(flagged=int(suspect.sum()), flagged_per_class=flagged_counts.tolist(), proxy_seeds=seeds)
  table = manifest.table.copy()
  order = table["index"].to_numpy()
  table["is_suspect"] = suspect[order]
  table["likely_label"] = likely[order].astype(np.int64)
  table["suspect_evidence"] = evidence[order]
  table["suspect_cutoff"] = cutoff_per_class[labels[order]].astype(np.float64)
  record["split"] = options.split
  if examine_test and context.test_probabilities is not None and dataset.test is not None:
    record["test"] = test_suspects(dataset.test, context.test_probabilities, num_classes)
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
  "FLAGGING_METHODS",
  "RANKING_SCORES",
  "SPLITS",
  "FlagContext",
  "FlagOptions",
  "Flags",
  "flag_label_issues",
  "ranking_score",
  "recorded_proxy_spec",
  "register_flagging_method",
  "test_suspects",
]
