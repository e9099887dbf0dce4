"""`run_pipeline`: the whole job from one config, into a run folder.

    dataset -> proxies -> scores -> manifest.parquet
            -> each selection -> subsets/<name>.parquet
            -> retrain full data and each subset -> report.json, results.csv, plots

The CLI's `pruning run` is a thin shell over this function.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from pruning.atomic import atomic_path, write_text
from pruning.config import PipelineConfig
from pruning.data import load_dataset
from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.plots import plot_arm_metrics, plot_kept_per_class
from pruning.retraining import RetrainResult, retrain
from pruning.scoring import score_dataset
from pruning.selection import select


@dataclasses.dataclass
class RunResult:
  output_dir: Path
  manifest: Manifest
  subsets: dict[str, Manifest]
  retrained: list[RetrainResult]

  def summary(self) -> pd.DataFrame:
    """One row per arm: kept examples and test metrics (mean and std over seeds)."""
    return pd.DataFrame([r.summary() for r in self.retrained])

  def per_seed(self) -> pd.DataFrame:
    frames = [r.per_seed.assign(arm=r.name, kept=r.num_examples) for r in self.retrained]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def prepare_output(output_dir: Path, *, overwrite: bool) -> Path:
  if output_dir.exists() and not output_dir.is_dir():
    raise UserError(f"output {str(output_dir)!r} is a file: give a folder for the run")
  if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
    raise UserError(
        f"run folder {str(output_dir)!r} already holds files: pass --overwrite to replace them"
        " or --output to choose another folder"
    )
  (output_dir / "subsets").mkdir(parents=True, exist_ok=True)
  return output_dir


def format_summary(summary: pd.DataFrame) -> str:
  """The report table printed at the end of a run."""
  lines = [f"{'arm':<24} {'kept':>6}  {'accuracy':>15}  {'worst-class recall':>18}  "
           f"{'balanced acc':>12}  {'macro-F1':>8}"]
  for row in summary.itertuples():
    lines.append(
        f"{row.name:<24} {row.kept:>6}  {row.accuracy:>8.4f} ± {row.accuracy_std:.4f}  "
        f"{row.worst_class_recall:>9.4f} ± {row.worst_class_recall_std:.4f}  "
        f"{row.balanced_accuracy:>12.4f}  {row.macro_f1:>8.4f}")
  return "\n".join(lines)


def run_pipeline(config: PipelineConfig, *, output_dir: str | Path | None = None,
                 overwrite: bool = False, progress: bool = True, log=print) -> RunResult:
  """Runs the config's whole pipeline; returns the manifest, subsets and metrics."""
  output_dir = prepare_output(Path(output_dir or config.output_dir), overwrite=overwrite)
  started = time.perf_counter()
  dataset = load_dataset(**config.dataset.options())
  if dataset.test is None:
    raise UserError(
        f"dataset {dataset.spec!r} has no test split, which retraining needs: add one, or hold out"
        " part of the training data (`dataset: {spec: ..., holdout: 0.2}`, or --holdout 0.2)")
  log(f"dataset {dataset.spec}: {len(dataset.train)} train, {len(dataset.test)} test examples,"
      f" {dataset.num_classes} classes")
  manifest = score_dataset(
      dataset, model=config.model, model_options=config.model_options, config=config.proxy_training,
      seeds=config.proxy.seeds, scores=config.scores, pipeline_config=config.to_dict(),
      progress=progress)
  manifest.to_parquet(output_dir / "manifest.parquet", overwrite=True)
  log(f"scored {len(manifest)} examples with {len(config.proxy.seeds)} proxy seeds:"
      f" {', '.join(manifest.scores)}")
  subsets = {}
  for selection in config.selections:
    subsets[selection.name] = select(manifest, **selection.options())
    subsets[selection.name].to_parquet(output_dir / "subsets" / f"{selection.name}.parquet",
                                       overwrite=True)
  arms = ([("full", None)] if config.retrain.include_full else []) + list(subsets.items())
  retrained = []
  for name, subset in arms:
    retrained.append(retrain(
        dataset, subset, model=config.model, model_options=config.model_options,
        config=config.training, seeds=config.retrain.seeds, budget=config.retrain.budget,
        name=name, progress=progress))
  result = RunResult(output_dir=output_dir, manifest=manifest, subsets=subsets, retrained=retrained)
  summary = result.summary()
  with atomic_path(output_dir / "results.csv", overwrite=True) as tmp:
    summary.drop(columns=["per_class_recall"]).to_csv(tmp, index=False)
  kept = {"full": [int(c) for c in pd.Series(dataset.train.y).value_counts().sort_index()]}
  kept.update({name: s.selection["kept_per_class"] for name, s in subsets.items()})
  report = {
      "name": config.name,
      "dataset": manifest.provenance["dataset"],
      "config": config.to_dict(),
      "arms": summary.to_dict(orient="records"),
      "per_seed": result.per_seed().to_dict(orient="records"),
      "kept_per_class": kept,
      "selections": {name: s.selection for name, s in subsets.items()},
      "seconds": round(time.perf_counter() - started, 1),
  }
  write_text(output_dir / "report.json", json.dumps(report, indent=2, default=str) + "\n", overwrite=True)
  if subsets:
    plot_kept_per_class(kept, output_dir / "kept_per_class.png", class_names=dataset.class_names,
                        overwrite=True)
  if retrained:
    baseline = next((n for n, s in subsets.items() if s.selection["strategy"] == "random"), None)
    plot_arm_metrics(summary.to_dict(orient="records"), output_dir / "accuracy.png",
                     baseline=baseline, overwrite=True)
    log(format_summary(summary))
  log(f"wrote {output_dir}/ (manifest.parquet, subsets/, report.json, results.csv, plots)"
      f" in {report['seconds']} s")
  return result
