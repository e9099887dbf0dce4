"""`run_pipeline`: the whole job from one config, into a run folder.

    dataset -> proxies -> scores -> manifest.parquet
            -> each selection -> subsets/<name>.parquet
            -> retrain full data and each subset -> results.csv/.parquet (one row
               per retrained model), summary.csv (per arm), report.json, plots

A config with `sweep: {keep: [...]}` is a study: every selection rule at every
fraction, plus `random` and the full data, plotted as pruning curves.

The CLI's `pruning run` is a thin shell over this function.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pruning.config import PipelineConfig
from pruning.data import load_dataset
from pruning.errors import UserError
from pruning.evaluation import describe_proxy_accuracy
from pruning.flagging import flag_label_issues
from pruning.jobs.locking import folder_lock
from pruning.jobs.recorded import SAVED_TOKENIZER, check_fingerprint, saved_tokenizer
from pruning.jobs.run_folder import (
  FINISHED,
  RESUME_DIR,
  check_output,
  discard_unstarted_run,
  prepare_output,
  remove_stale_temporaries,
  write_run_record,
)
from pruning.jobs.run_results import format_summary, plot_run, results_table, write_table
from pruning.manifest import Manifest
from pruning.report import below_random, describe_below_random, noise_detection
from pruning.retraining import RetrainResult, retrain
from pruning.retraining.remedies import RemedyOptions, check_remedy_data
from pruning.runtime.atomic import atomic_path, make_working_folder, write_text
from pruning.scores.run import score_dataset
from pruning.selection import select
from pruning.training import job_checkpointer


@dataclasses.dataclass
class RunResult:
  output_dir: Path
  manifest: Manifest
  subsets: dict[str, Manifest]
  retrained: list[RetrainResult]
  results: pd.DataFrame

  def summary(self) -> pd.DataFrame:
    """One row per arm: kept examples and test metrics (mean and std over seeds)."""
    return pd.DataFrame([r.summary() for r in self.retrained])

  def per_seed(self) -> pd.DataFrame:
    frames = [r.per_seed.assign(arm=r.name, kept=r.num_examples) for r in self.retrained]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def check_budgets(config: PipelineConfig, num_examples: int) -> None:
  """Refuses a selection that keeps more than the data has, before training."""
  for arm in config.arms:
    keep = arm.selection.keep
    if isinstance(keep, int) and not isinstance(keep, bool) and keep > num_examples:
      raise UserError(
        f"selection {arm.rule!r} keeps {keep} examples but the training split has"
        f" {num_examples}: keep at most {num_examples} (or a fraction such as 0.5)"
      )


def retrain_arm(
  dataset, subset, *, name: str, remedy: str, config: PipelineConfig, resume: Path, progress: bool
) -> RetrainResult:
  """One retraining arm, resumable: finished arms are read back from `.resume/arms/`."""
  done = resume / "arms" / f"{name}.json"
  if done.is_file():
    record = json.loads(done.read_text())
    return RetrainResult(
      name=name,
      num_examples=record["num_examples"],
      num_steps=record["num_steps"],
      models=None,
      per_seed=pd.DataFrame(record["per_seed"]),
      remedy=record.get("remedy", "none"),
      synthetic=record.get("synthetic", 0),
      per_class=pd.DataFrame(record["per_class"]) if record.get("per_class") else None,
    )
  checkpointer = job_checkpointer(make_working_folder(resume, f"arms/{name}"))
  result = retrain(
    dataset,
    subset,
    spec=config.retrain_spec(),
    budget=config.retrain.budget,
    remedy=remedy,
    remedy_options=config.retrain.remedy_options,
    name=name,
    checkpointer=checkpointer,
    progress=progress,
  )
  write_text(
    done,
    json.dumps(
      {
        "num_examples": result.num_examples,
        "num_steps": result.num_steps,
        "per_seed": result.per_seed.to_dict(orient="records"),
        "remedy": result.remedy,
        "synthetic": result.synthetic,
        "per_class": None if result.per_class is None else result.per_class.to_dict(orient="records"),
      }
    ),
    overwrite=True,
  )
  checkpointer.clear()
  return result


def load_finished_run(output_dir: Path, config: PipelineConfig) -> RunResult:
  """The `RunResult` of a finished run, read back from its folder (models are
  not kept, so `retrained[i].models` is None)."""
  report = json.loads((output_dir / "report.json").read_text())
  per_seed = pd.DataFrame(report["per_seed"])
  retrained = []
  for arm in report["arms"]:
    rows = per_seed[per_seed["arm"] == arm["name"]].drop(columns=["arm", "kept"]).reset_index(drop=True)
    retrained.append(
      RetrainResult(
        name=arm["name"],
        num_examples=arm["kept"],
        num_steps=arm["steps"],
        models=None,
        per_seed=rows,
        remedy=arm.get("remedy", "none"),
        synthetic=arm.get("synthetic", 0),
      )
    )
  subsets = {arm.name: Manifest.read_parquet(output_dir / "subsets" / f"{arm.name}.parquet") for arm in config.arms}
  return RunResult(
    output_dir=output_dir,
    manifest=Manifest.read_parquet(output_dir / "manifest.parquet"),
    subsets=subsets,
    retrained=retrained,
    results=pd.read_parquet(output_dir / "results.parquet"),
  )


def run_pipeline(
  config: PipelineConfig,
  *,
  output_dir: str | Path | None = None,
  overwrite: bool = False,
  progress: bool = True,
  log=print,
  expect_fingerprint: str | None = None,
  tokenizer_json: str | None = None,
) -> RunResult:
  """Runs the config's whole pipeline; returns the manifest, subsets and metrics.

  `expect_fingerprint`, `tokenizer_json`: a re-run of a manifest's run (text
  is tokenised by the tokenizer it records). A resumed text run tokenises
  with the `tokenizer.json` it saved. Holds the run folder's lock throughout
  (see `pruning.jobs.locking`).
  """
  output_dir = Path(output_dir or config.output_dir)
  if output_dir.exists() and not output_dir.is_dir():
    raise UserError(f"output {str(output_dir)!r} is a file: give a folder for the run")
  # Refused before the lock is taken, so a refused run writes nothing there;
  # checked again under the lock, where it counts.
  check_output(output_dir, overwrite=overwrite, config=config)
  created, had_resume = not output_dir.exists(), (output_dir / RESUME_DIR).exists()
  try:
    with folder_lock(output_dir):
      try:
        return _run_locked(
          config,
          output_dir=output_dir,
          overwrite=overwrite,
          progress=progress,
          log=log,
          expect_fingerprint=expect_fingerprint,
          tokenizer_json=tokenizer_json,
        )
      except UserError:
        if not had_resume:  # refused before it saved any work: leave no resume state behind
          discard_unstarted_run(output_dir, created=False)
        raise
  except UserError:
    if created:
      discard_unstarted_run(output_dir, created=True)
    raise


def _run_locked(
  config: PipelineConfig,
  *,
  output_dir: Path,
  overwrite: bool,
  progress: bool,
  log,
  expect_fingerprint: str | None,
  tokenizer_json: str | None,
) -> RunResult:
  resuming = prepare_output(output_dir, overwrite=overwrite, config=config)
  if resuming == FINISHED:
    log(f"{output_dir}/ already holds the finished run of this config: nothing to do (--overwrite runs it again)")
    return load_finished_run(output_dir, config)
  resume = output_dir / RESUME_DIR
  if resuming:
    remove_stale_temporaries(output_dir)
    log(f"resuming the unfinished run in {output_dir}/")
  started = time.perf_counter()
  if resuming and tokenizer_json is None:
    tokenizer_json = saved_tokenizer(output_dir)
  dataset = load_dataset(**config.dataset.options(), tokenizer_json=tokenizer_json)
  check_fingerprint(dataset, expect_fingerprint, source="the recorded config")
  if dataset.test is None:
    raise UserError(
      f"dataset {dataset.spec!r} has no test split, which retraining needs: add one, or hold out"
      " part of the training data (`dataset: {spec: ..., holdout: 0.2}`, or --holdout 0.2)"
    )
  check_budgets(config, len(dataset.train))
  for remedy in config.remedies:  # before hours of proxy training, not after
    check_remedy_data(dataset, remedy, RemedyOptions(**config.retrain.remedy_options))
  log(
    f"dataset {dataset.spec}: {len(dataset.train)} train, {len(dataset.test)} test examples,"
    f" {dataset.num_classes} classes"
  )
  features = dataset.features_line()
  if features:
    log(features)
  record = dataset.tokenizer
  if dataset.tokenizer_json is not None and record is not None:  # text: the tokenizer goes with the run
    write_text(output_dir / SAVED_TOKENIZER, dataset.tokenizer_json, overwrite=True)
    log(f"tokenizer: {record['kind']}, {record['vocab_size']} tokens -> {output_dir}/{SAVED_TOKENIZER}")
  if (resume / "scored").is_file():
    manifest = Manifest.read_parquet(output_dir / "manifest.parquet")
  else:
    proxies = job_checkpointer(make_working_folder(resume, "proxy"))
    manifest = score_dataset(
      dataset, config.proxy_spec(), checkpointer=proxies, pipeline_config=config.to_dict(), progress=progress
    )
    if config.flag is not None:  # likely wrong labels, for selections that drop them
      manifest = flag_label_issues(manifest, dataset, options=config.flag, progress=progress)
      flagging = manifest.provenance["flagging"]
      log(f"flagged {flagging['flagged']} examples as likely mislabeled ({flagging['method']})")
    manifest.to_parquet(output_dir / "manifest.parquet", overwrite=True)
    write_text(resume / "scored", "", overwrite=True)
    proxies.clear()
  log(f"scored {len(manifest)} examples with {len(config.proxy.seeds)} proxy seeds: {', '.join(config.scores)}")
  if manifest.provenance.get("proxy_accuracy"):
    log(describe_proxy_accuracy(manifest.provenance["proxy_accuracy"]))
  arms = {arm.name: arm for arm in config.arms}
  subsets = {}
  for arm in arms.values():
    subsets[arm.name] = select(manifest, arm.selection)
    subsets[arm.name].to_parquet(output_dir / "subsets" / f"{arm.name}.parquet", overwrite=True)
  include_full = config.retrain.include_full or bool(config.sweep.keep)
  to_train = ([("full", None)] if include_full else []) + list(subsets.items())
  retrained, sources = [], {}
  for remedy in config.remedies:
    for name, subset in to_train:
      # With several remedies every arm is retrained with each: `ARM+REMEDY`.
      arm_name = name if len(config.remedies) == 1 else f"{name}+{remedy}"
      sources[arm_name] = name
      retrained.append(
        retrain_arm(dataset, subset, name=arm_name, remedy=remedy, config=config, resume=resume, progress=progress)
      )
  full_counts = np.bincount(dataset.train.y, minlength=dataset.num_classes)
  results = results_table(
    retrained, arms, subsets, full_counts=full_counts, noisy=dataset.train.is_noisy, sources=sources
  )
  result = RunResult(output_dir=output_dir, manifest=manifest, subsets=subsets, retrained=retrained, results=results)
  summary = result.summary()
  write_table(results, output_dir, "results")
  per_class = [r.per_class.assign(arm=r.name) for r in retrained if r.per_class is not None]
  if per_class:
    table = pd.concat(per_class, ignore_index=True)
    write_table(table[["arm", *[c for c in table.columns if c != "arm"]]], output_dir, "per_class")
  with atomic_path(output_dir / "summary.csv", overwrite=True) as tmp:
    summary.drop(columns=["per_class_recall"]).to_csv(tmp, index=False)
  losing = below_random(results)
  noise = noise_detection(manifest)
  if len(noise):
    write_table(noise, output_dir, "noise_detection")
    log("noise detection (difficulty against is_noisy):\n" + noise.to_string(index=False))
  kept = {"full": full_counts.tolist()}
  kept.update({name: (s.selection or {})["kept_per_class"] for name, s in subsets.items()})
  report = {
    "name": config.name,
    "dataset": manifest.provenance["dataset"],
    "config": config.to_dict(),
    "arms": summary.to_dict(orient="records"),
    "per_seed": result.per_seed().to_dict(orient="records"),
    "kept_per_class": kept,
    "selections": {name: s.selection for name, s in subsets.items()},
    "noise_detection": noise.to_dict(orient="records"),
    "below_random": losing.to_dict(orient="records"),
  }
  # Sorted keys and no timings: a resumed run writes the same bytes as an
  # uninterrupted one. How long it took goes to timings.json.
  write_text(
    output_dir / "report.json", json.dumps(report, indent=2, default=str, sort_keys=True) + "\n", overwrite=True
  )
  seconds = round(time.perf_counter() - started, 1)
  write_text(output_dir / "timings.json", json.dumps({"seconds": seconds, "resumed": resuming}) + "\n", overwrite=True)
  plot_run(config, results, summary, kept, subsets, output_dir, class_names=dataset.class_names)
  write_run_record(output_dir, list(subsets))
  shutil.rmtree(resume, ignore_errors=True)  # finished: nothing left to resume
  if retrained:
    log(format_summary(summary))
    for line in describe_below_random(losing):
      log(line)
  log(
    f"wrote {output_dir}/ (manifest.parquet, subsets/, report.json, results.csv/.parquet,"
    f" summary.csv, plots, run-record.json) in {seconds} s"
  )
  return result
