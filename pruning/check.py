"""Validation of manifests and run folders (`pruning check PATH`).

Reading a manifest already refuses a broken schema; `check` goes further and
lists every problem it finds instead of stopping at the first: non-finite
scores, a mean that disagrees with its per-seed columns, labels or rows out of
the dataset's range, a subset whose recorded selection disagrees with its
rows, noise columns that disagree with each other, and, in a run folder,
subsets that are not drawn from the run's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pruning.errors import UserError
from pruning.manifest import Manifest, seed_column, std_column


def check_manifest(manifest: Manifest, *, name: str = "manifest") -> list[str]:
  """Problems with one manifest (empty when it is sound)."""
  problems = []
  table = manifest.table
  dataset = manifest.provenance.get("dataset", {})
  num_classes = dataset.get("num_classes")
  if num_classes is not None and len(table) and table["label"].max() >= num_classes:
    problems.append(f"{name}: label {int(table['label'].max())} is out of range for {num_classes} classes")
  num_train = dataset.get("num_train")
  if num_train is not None and len(table) and table["index"].max() >= num_train:
    problems.append(f"{name}: row index {int(table['index'].max())} is beyond the {num_train} training examples")
  for column, info in manifest.scores.items():
    values = table[column].to_numpy(np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
      problems.append(f"{name}: score {column!r} has {bad} NaN or infinite values")
      continue
    per_seed = np.stack([table[seed_column(column, s)].to_numpy(np.float64) for s in info["seeds"]])
    if not np.allclose(per_seed.mean(axis=0), values, rtol=1e-5, atol=1e-6):
      problems.append(f"{name}: score {column!r} is not the mean of its per-seed columns")
    if not np.allclose(per_seed.std(axis=0), table[std_column(column)].to_numpy(np.float64), rtol=1e-4, atol=1e-6):
      problems.append(f"{name}: {std_column(column)!r} is not the standard deviation of the per-seed columns")
  if "is_noisy" in table and "clean_label" in table:
    if not np.array_equal(table["is_noisy"].to_numpy(bool), (table["label"] != table["clean_label"]).to_numpy()):
      problems.append(f"{name}: 'is_noisy' disagrees with label != clean_label")
  selection = manifest.selection
  if selection:
    if selection.get("kept") != len(table):
      problems.append(f"{name}: the selection records {selection.get('kept')} kept examples but it has {len(table)}")
    kept = np.bincount(table["label"].to_numpy(), minlength=len(selection.get("kept_per_class", [])))
    if kept.tolist() != selection.get("kept_per_class"):
      problems.append(f"{name}: kept examples per class {kept.tolist()} disagree with the recorded"
                      f" {selection.get('kept_per_class')}")
  return problems


def check_subset(subset: Manifest, manifest: Manifest, *, name: str) -> list[str]:
  """Problems with a subset as a draw from `manifest`."""
  problems = check_manifest(subset, name=name)
  if subset.fingerprint != manifest.fingerprint:
    problems.append(f"{name}: computed on another dataset than the run's manifest (fingerprint differs)")
    return problems
  full = manifest.table.set_index("example_id")
  ids = subset.table["example_id"]
  missing = ~ids.isin(full.index)
  if missing.any():
    problems.append(f"{name}: {int(missing.sum())} example ids are not in the manifest (e.g. {ids[missing].iloc[0]!r})")
  else:
    rows = full.loc[ids.to_numpy()]
    if not (np.array_equal(rows["index"].to_numpy(), subset.table["index"].to_numpy())
            and np.array_equal(rows["label"].to_numpy(), subset.table["label"].to_numpy())):
      problems.append(f"{name}: rows or labels differ from the manifest's for the same ids")
  return problems


def _read(path: Path, problems: list[str]) -> Manifest | None:
  try:
    return Manifest.read_parquet(path)
  except UserError as error:
    problems.append(str(error))
    return None


def check_path(path: str | Path) -> list[str]:
  """Problems with a manifest file or a run folder; raises `UserError` if `path` is neither."""
  path = Path(path)
  problems: list[str] = []
  if path.is_file():
    manifest = _read(path, problems)
    return problems + (check_manifest(manifest, name=path.name) if manifest else [])
  if not path.is_dir():
    raise UserError(f"nothing at {str(path)!r}: give a manifest file or a run folder")
  manifest_path = path / "manifest.parquet"
  if not manifest_path.is_file():
    raise UserError(f"{str(path)!r} has no manifest.parquet, so it is not a run folder: give a manifest file"
                    " or the folder `pruning run` wrote")
  if (path / ".resume").is_dir():
    problems.append("the run is unfinished (it holds .resume/): rerun the same `pruning run` command to resume it")
  manifest = _read(manifest_path, problems)
  if manifest is None:
    return problems
  problems += check_manifest(manifest, name="manifest.parquet")
  subsets = sorted((path / "subsets").glob("*.parquet"))
  for subset_path in subsets:
    subset = _read(subset_path, problems)
    if subset is not None:
      problems += check_subset(subset, manifest, name=f"subsets/{subset_path.name}")
  report_path = path / "report.json"
  if not report_path.is_file():
    problems.append("report.json is missing: the run did not finish; rerun it")
  else:
    try:
      report = json.loads(report_path.read_text())
    except json.JSONDecodeError:
      problems.append("report.json is not valid JSON")
    else:
      expected = {p.stem for p in subsets}
      recorded = set(report.get("selections", {}))
      if recorded != expected:
        problems.append(f"report.json records selections {sorted(recorded)} but subsets/ holds {sorted(expected)}")
  for name in ("results.csv", "results.parquet"):
    if not (path / name).is_file():
      problems.append(f"{name} is missing: the run did not finish; rerun it")
  return problems
