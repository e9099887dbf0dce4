"""Validation of manifests and run folders (`pruning check PATH [--data SPEC]`).

Reading a manifest already refuses a broken schema or provenance and a table
that no longer matches its content digest; `check` goes further and lists
every problem it finds instead of stopping at the first:

- in a manifest or subset: a content digest that does not match (any edited,
  deleted or reordered row, any edited provenance), rows missing against the
  recorded number of training examples, non-finite scores, a mean that
  disagrees with its per-seed columns, labels or rows out of the dataset's
  range, a selection record that disagrees with its rows, noise columns that
  disagree with each other;
- in a run folder: every file the run wrote against the SHA-256 in its
  `run-record.json` (an edited CSV, a truncated Parquet file, a deleted plot),
  subsets not drawn from the run's manifest, and each selection derived again
  from the manifest with the recorded config (a swapped example, a subset
  from another run or an edited selection record shows);
- with `--data SPEC`: the manifest's ids, labels and fingerprint against the
  dataset as loaded now.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pruning.errors import UserError
from pruning.manifest import LEGACY_FORMATS, Manifest, seed_column, std_column
from pruning.models.pretrained import changed_checkpoint


def check_manifest(manifest: Manifest, *, name: str = "manifest") -> list[str]:
  """Problems with one manifest (empty when it is sound)."""
  problems = []
  changed = changed_checkpoint(manifest.provenance.get("model") or {})
  if changed:
    problems.append(f"{name}: {changed}")
  table = manifest.table
  dataset = manifest.provenance.get("dataset", {})
  num_classes = dataset.get("num_classes")
  if num_classes is not None and len(table) and table["label"].max() >= num_classes:
    problems.append(f"{name}: label {int(table['label'].max())} is out of range for {num_classes} classes")
  num_train = dataset.get("num_train")
  if num_train is not None and len(table) and table["index"].max() >= num_train:
    problems.append(f"{name}: row index {int(table['index'].max())} is beyond the {num_train} training examples")
  shard = manifest.provenance.get("shard")
  expected = num_train if shard is None or not isinstance(shard, dict) else shard.get("stop", 0) - shard.get("start", 0)
  if manifest.selection is None and expected is not None and len(table) != expected:
    problems.append(
      f"{name}: {len(table)} rows, but the provenance records {expected} training examples (rows were deleted or added)"
    )
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
      problems.append(
        f"{name}: kept examples per class {kept.tolist()} disagree with the recorded {selection.get('kept_per_class')}"
      )
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
    if not (
      np.array_equal(rows["index"].to_numpy(), subset.table["index"].to_numpy())
      and np.array_equal(rows["label"].to_numpy(), subset.table["label"].to_numpy())
    ):
      problems.append(f"{name}: rows or labels differ from the manifest's for the same ids")
  return problems


def _read(path: Path, problems: list[str]) -> Manifest | None:
  try:
    manifest = Manifest.read_parquet(path, verify=False)
  except UserError as error:
    problems.append(str(error))
    return None
  problem = manifest.digest_problem(path)
  if problem:
    problems.append(problem)
  elif manifest.provenance.get("format") in LEGACY_FORMATS:
    problems.append(
      f"{str(path)!r} was written by an older version without a content digest, so edits cannot"
      " be detected: recreate it with this version"
    )
  return manifest


def check_against_data(manifest: Manifest, dataset, *, name: str) -> list[str]:
  """Problems of a manifest against the dataset it claims to score."""
  problems = []
  if dataset.fingerprint != manifest.fingerprint:
    problems.append(
      f"{name}: the data loaded now has fingerprint {dataset.fingerprint[:12]}, not the recorded"
      f" {manifest.fingerprint[:12]}: it changed since, or is another dataset"
    )
  table = manifest.table
  rows = table["index"].to_numpy(np.int64)
  if len(rows) and (rows.min() < 0 or rows.max() >= len(dataset.train)):
    problems.append(f"{name}: row index {int(rows.max())} is beyond the data's {len(dataset.train)} training examples")
    return problems
  ids = np.asarray(dataset.train.ids[rows]).astype(str)
  differ = ids != table["example_id"].to_numpy().astype(str)
  if differ.any():
    problems.append(
      f"{name}: {int(differ.sum())} example ids differ from the data's at the same rows (e.g. row"
      f" {int(rows[differ][0])})"
    )
  labels = np.asarray(dataset.train.y)[rows]
  wrong = labels != table["label"].to_numpy(np.int64)
  if wrong.any():
    problems.append(f"{name}: {int(wrong.sum())} labels differ from the data's (e.g. row {int(rows[wrong][0])})")
  if manifest.selection is None and "shard" not in manifest.provenance and len(table) != len(dataset.train):
    problems.append(f"{name}: {len(table)} rows for the data's {len(dataset.train)} training examples")
  return problems


def check_path(path: str | Path, *, data=None) -> list[str]:
  """Problems with a manifest file or a run folder; raises `UserError` if
  `path` is neither. `data` (a `Dataset`) is compared with the manifest too."""
  path = Path(path)
  problems: list[str] = []
  if path.is_file():
    manifest = _read(path, problems)
    if manifest is None:
      return problems
    problems += check_manifest(manifest, name=path.name)
    if data is not None:
      problems += check_against_data(manifest, data, name=path.name)
    return problems
  if not path.is_dir():
    raise UserError(f"nothing at {str(path)!r}: give a manifest file or a run folder")
  manifest_path = path / "manifest.parquet"
  if not manifest_path.is_file():
    raise UserError(
      f"{str(path)!r} has no manifest.parquet, so it is not a run folder: give a manifest file"
      " or the folder `pruning run` wrote"
    )
  if (path / ".resume").is_dir():
    problems.append("the run is unfinished (it holds .resume/): rerun the same `pruning run` command to resume it")
  manifest = _read(manifest_path, problems)
  if manifest is None:
    return problems
  problems += check_manifest(manifest, name="manifest.parquet")
  if data is not None:
    problems += check_against_data(manifest, data, name="manifest.parquet")
  subsets = sorted((path / "subsets").glob("*.parquet"))
  read_subsets = {}
  for subset_path in subsets:
    subset = _read(subset_path, problems)
    if subset is not None:
      read_subsets[subset_path.stem] = subset
      problems += check_subset(subset, manifest, name=f"subsets/{subset_path.name}")
  report_path = path / "report.json"
  if not report_path.is_file():
    problems.append("report.json is missing: the run did not finish; rerun it")
  else:
    try:
      report = json.loads(report_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
      problems.append("report.json is not valid JSON")
    else:
      expected = {p.stem for p in subsets}
      recorded = set(report.get("selections", {})) if isinstance(report, dict) else set()
      if recorded != expected:
        problems.append(f"report.json records selections {sorted(recorded)} but subsets/ holds {sorted(expected)}")
  for name in ("results.csv", "results.parquet"):
    if not (path / name).is_file():
      problems.append(f"{name} is missing: the run did not finish; rerun it")
  problems += check_run_record(path)
  problems += check_selections(manifest, read_subsets)
  return problems


def check_run_record(folder: Path) -> list[str]:
  """Every file in the run's `run-record.json` is there with its recorded SHA-256."""
  from pruning.jobs.run_folder import RUN_RECORD, RUN_RECORD_FORMAT, file_digest, recorded_outputs

  record_path = folder / RUN_RECORD
  if not record_path.is_file():
    if (folder / ".resume").is_dir():
      return []
    return [
      f"{RUN_RECORD} is missing (an older version's run, or deleted), so edited outputs cannot be"
      " detected: rerun the run with --overwrite"
    ]
  try:
    record = json.loads(record_path.read_text())
    files = record["files"]
    if record.get("format") != RUN_RECORD_FORMAT or not isinstance(files, dict):
      raise ValueError
  except (ValueError, KeyError, TypeError, UnicodeDecodeError):
    return [f"{RUN_RECORD} is damaged: rerun the run with --overwrite"]
  problems = []
  for name, digest in sorted(files.items()):
    file = folder / str(name)
    if not file.is_file():
      problems.append(f"{name} is missing (the run wrote it): rerun the run with --overwrite")
    elif file_digest(file) != digest:
      problems.append(f"{name} differs from what the run wrote (edited or truncated): rerun the run with --overwrite")
  present = [*recorded_outputs(folder), *(f"subsets/{p.name}" for p in (folder / "subsets").glob("*.parquet"))]
  extra = sorted(name for name in present if name not in files)
  if extra:
    problems.append(f"{', '.join(extra)} did not come from this run: remove it or rerun the run")
  return problems


def check_selections(manifest: Manifest, subsets: dict[str, Manifest]) -> list[str]:
  """Each subset against the same selection derived again from the manifest
  with the config the manifest records."""
  from pruning.config import parse_config
  from pruning.plugins import PluginNeeded
  from pruning.selection import select

  recorded = manifest.provenance.get("config")
  if not recorded:
    return []
  try:
    config = parse_config(recorded, source="the manifest's recorded config", import_plugins=False)
  except PluginNeeded:
    raise  # not a problem of the run: the command needs a flag
  except UserError as error:
    return [f"manifest.parquet: {error}"]
  problems = []
  for arm in config.arms:
    subset = subsets.get(arm.name)
    if subset is None:
      problems.append(f"subsets/{arm.name}.parquet is missing (the config selects it): rerun the run")
      continue
    try:
      derived = select(manifest, arm.selection)
    except UserError as error:
      problems.append(f"subsets/{arm.name}.parquet: the recorded config no longer selects ({error})")
      continue
    if not np.array_equal(
      derived.table["example_id"].to_numpy().astype(str), subset.table["example_id"].to_numpy().astype(str)
    ):
      problems.append(
        f"subsets/{arm.name}.parquet: its examples are not the ones the recorded selection keeps from the manifest"
      )
    if json.loads(json.dumps(derived.selection, default=str)) != subset.selection:
      problems.append(f"subsets/{arm.name}.parquet: its selection record differs from the recorded config's")
  return problems
