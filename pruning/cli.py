"""The `pruning` command: a thin shell over the Python API.

Every command maps a `UserError` to one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from pruning.config import ProxyConfig, RetrainConfig, SelectionConfig
from pruning.errors import UserError
from pruning.locking import output_lock
from pruning.runtime.progress import set_progress
from pruning.training import TrainConfig

DATA_HELP = "dataset spec: digits, mnist1d, npz:PATH, parquet:PATH or tfds:NAME[/CONFIG][:VERSION]:SPLIT"


def _add_data_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
  parser.add_argument("--data", required=required, metavar="SPEC", help=DATA_HELP)
  parser.add_argument("--label-column", default="label", help="label column of a Parquet table (default: label)")
  parser.add_argument("--data-dir", default=None, help="where TFDS finds prepared datasets")
  parser.add_argument("--test-split", default="test", help="TFDS split used for testing (default: test)")
  parser.add_argument(
    "--holdout",
    type=float,
    default=None,
    metavar="FRACTION",
    help="for data without a test split: hold out this fraction of the training split (seeded, stratified), e.g. 0.2",
  )
  parser.add_argument(
    "--validation",
    type=float,
    default=None,
    metavar="FRACTION",
    help="hold out this fraction of the training split as a validation split"
    " (what --class-rule drop measures class errors on)",
  )
  parser.add_argument(
    "--long-tail",
    type=float,
    default=None,
    metavar="RATIO",
    help="study transform: subsample training classes to an exponential profile with this imbalance ratio, e.g. 100",
  )
  parser.add_argument(
    "--label-noise",
    type=float,
    default=None,
    metavar="RATE",
    help="study transform: flip this fraction of training labels to another class",
  )
  parser.add_argument("--data-seed", type=int, default=0, help="seed of holdouts and transforms (default: 0)")
  parser.add_argument(
    "--normalize",
    default="auto",
    choices=("auto", "per_feature", "per_channel", "global", "none"),
    help="input standardisation for training: auto (per feature for tables, per channel for"
    " images), per_feature, per_channel, global or none (default: auto)",
  )
  parser.add_argument(
    "--stream",
    action="store_true",
    help="read Parquet/TFDS training features a row group at a time into a memory-mapped"
    " file instead of into memory (an uncompressed .npz is always mapped)",
  )


def _add_training_options(parser: argparse.ArgumentParser, *, seeds_default: int, epochs_default: int) -> None:
  parser.add_argument("--model", default="mlp", help="linear, mlp, cnn or resnet18 (default: mlp)")
  parser.add_argument(
    "--model-option",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a model option, value in YAML, e.g. hidden=[512,512] (repeatable)",
  )
  parser.add_argument("--epochs", type=int, default=epochs_default, help=f"training epochs (default: {epochs_default})")
  defaults = TrainConfig()
  parser.add_argument(
    "--batch-size", type=int, default=defaults.batch_size, help=f"examples per step (default: {defaults.batch_size})"
  )
  parser.add_argument("--optimizer", default=defaults.optimizer, help=f"adam or sgd (default: {defaults.optimizer})")
  parser.add_argument(
    "--learning-rate", type=float, default=defaults.learning_rate, help=f"default: {defaults.learning_rate}"
  )
  parser.add_argument(
    "--weight-decay", type=float, default=defaults.weight_decay, help=f"default: {defaults.weight_decay}"
  )
  parser.add_argument(
    "--schedule",
    default=defaults.schedule,
    help=f"learning-rate schedule: constant or cosine (default: {defaults.schedule})",
  )
  parser.add_argument(
    "--seeds",
    default=str(seeds_default),
    help=f"a count N (seeds 0..N-1) or a comma list, e.g. 0,3,7 (default: {seeds_default})",
  )


def _add_output(parser: argparse.ArgumentParser, help_text: str, *, required: bool = True) -> None:
  parser.add_argument("--out", required=required, metavar="PATH", help=help_text)
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _add_progress(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _data_options(args) -> dict:
  """The data options (`pruning.config.DataConfig`'s fields) given on the command line."""
  return {
    "spec": args.data,
    "label_column": args.label_column,
    "data_dir": args.data_dir,
    "test_split": args.test_split,
    "holdout": args.holdout,
    "validation": args.validation,
    "long_tail": args.long_tail,
    "label_noise": args.label_noise,
    "seed": args.data_seed,
    "stream": args.stream,
    "normalize": args.normalize,
  }


def _load_data(args):
  from pruning.config import DataConfig
  from pruning.data import load_dataset

  return load_dataset(**DataConfig(**_data_options(args)).options())


def _load_data_for(args, manifest):
  """The data a manifest or subset was made from: `--data` with the transforms
  the manifest records, unless transform flags are given."""
  from pruning.config import DataConfig
  from pruning.data import describe_options, load_dataset_for

  options = DataConfig(**_data_options(args)).options()
  dataset, taken = load_dataset_for(manifest.provenance, **options)
  if taken:
    print(f"applying the transforms the subset records: {describe_options(taken)}", file=sys.stderr)
  return dataset


def _model_options(pairs) -> dict:
  import yaml

  options = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key:
      raise UserError(f"--model-option {pair!r} is not KEY=VALUE: write e.g. hidden=[512,512]")
    try:
      options[key.strip()] = yaml.safe_load(value)
    except yaml.YAMLError:
      raise UserError(f"--model-option {pair!r}: the value is not valid YAML") from None
  return options


def _train_config(args):
  return TrainConfig(
    epochs=args.epochs,
    batch_size=args.batch_size,
    optimizer=args.optimizer,
    learning_rate=args.learning_rate,
    weight_decay=args.weight_decay,
    schedule=args.schedule,
  )


def cmd_score(args) -> int:
  from pruning.config import parse_config, parse_seeds
  from pruning.data import load_dataset
  from pruning.locking import folder_lock
  from pruning.pipeline import (
    check_fingerprint,
    config_from_manifest,
    score_config_to_parquet,
    score_with_trained,
    train_with_config,
  )
  from pruning.runtime.atomic import check_writable
  from pruning.scores import parse_requests
  from pruning.shards import parse_shard
  from pruning.training.checkpointing import TrainingCheckpointer

  if args.train_only and not args.proxies:
    raise UserError("--train-only saves the proxies for later jobs: give the folder with --proxies DIR")
  if not args.train_only:
    if not args.out:
      raise UserError("pruning score needs --out PATH, the manifest to write (or --train-only with --proxies)")
    check_writable(args.out, overwrite=args.overwrite)
  shard = parse_shard(args.shard) if args.shard else None
  if args.backend == "ray" and (shard is not None or args.distributed or args.proxies):
    raise UserError("--backend ray shards, trains and merges the job itself: drop --shard, --distributed and --proxies")
  if args.distributed:
    if shard is not None or args.proxies:
      raise UserError("--distributed shards the rows and trains on every process itself: drop --shard and --proxies")
    from pruning import distributed

    shard = distributed.initialize(
      coordinator=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
    )
  fingerprint = None
  if args.from_manifest:
    config, fingerprint = config_from_manifest(args.from_manifest)
  else:
    if not args.data:
      raise UserError("pruning score needs --data SPEC (or --from-manifest M to repeat a manifest's run)")
    parse_requests(args.score)
    config = parse_config(
      {
        "name": "score",
        "dataset": _data_options(args),
        "model": args.model,
        "model_options": _model_options(args.model_option),
        "training": dataclasses.asdict(_train_config(args)),
        "proxy": {
          "seeds": list(parse_seeds(args.seeds, where="--seeds")),
          "epochs": args.epochs,
          "vog_checkpoints": args.vog_checkpoints,
          "dynamics_window": args.dynamics_window,
        },
        "scores": args.score,
      },
      source="the command line",
    )
  progress = not args.no_progress
  columns = ", ".join(r.column for r in parse_requests(config.scores))
  if args.backend == "ray":
    from pruning.ray_backend import score_on_ray

    # The workers load the data; the driver holds none.
    manifest = score_on_ray(
      config,
      address=args.ray_address,
      num_shards=args.num_shards,
      fingerprint=fingerprint,
      progress=progress,
      log=lambda line: print(line, file=sys.stderr),
    )
    with output_lock(args.out):
      manifest.to_parquet(args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: {len(manifest)} examples, scores {columns}")
    return 0
  dataset = load_dataset(**config.dataset.options())
  check_fingerprint(dataset, fingerprint, source=f"--from-manifest {args.from_manifest}")
  if args.proxies:
    # Shards of one job share the folder: the first to take the lock trains
    # and saves; the others wait, then load the finished training.
    proxies = TrainingCheckpointer(args.proxies)
    with folder_lock(args.proxies, wait=True):
      if proxies.latest_epoch() is not None:
        print(f"using the proxies in {args.proxies}/ (trained to epoch {proxies.latest_epoch()})", file=sys.stderr)
      models = train_with_config(config, dataset, checkpointer=proxies, progress=progress)
    if args.train_only:
      print(
        f"trained {len(config.proxy.seeds)} proxies into {args.proxies}/: score with the same command,"
        " --train-only replaced by --shard I/N or --out"
      )
      return 0
    with output_lock(args.out):
      rows = score_config_to_parquet(
        config, models, dataset, args.out, shard=shard, overwrite=args.overwrite, progress=progress
      )
    print(f"wrote {args.out}: {rows} examples, scores {columns}")
    return 0
  # Proxy checkpoints live beside the output until it is written, so the same
  # command resumes a killed job; the folder's lock keeps a second job out.
  out = Path(args.out)
  partial = out.parent / (f".{out.name}.partial" + (f"-{shard[0]}-of-{shard[1]}" if shard else ""))
  fresh = not partial.exists()
  with folder_lock(partial):
    # Orbax saves a multi-process job's state collectively; a distributed job
    # does not checkpoint yet (its processes would have to agree on resuming).
    checkpointer = None if args.distributed else TrainingCheckpointer(partial / "proxy")
    if checkpointer is not None and checkpointer.latest_epoch() is not None:
      print(f"resuming proxy training from epoch {checkpointer.latest_epoch()} ({partial}/)", file=sys.stderr)
    try:
      models = train_with_config(config, dataset, checkpointer=checkpointer, progress=progress)
    except UserError:
      # Refused before anything was saved: leave no trace of the attempt.
      if fresh and (checkpointer is None or checkpointer.latest_epoch() is None):
        _remove_fresh_partial(partial)
      raise
    if args.distributed:
      manifest = score_with_trained(config, models, dataset, shard=shard, progress=progress)
      return _finish_distributed(manifest, args, *shard, partial=partial)
    # Streamed: each block of rows is scored and written before the next.
    with output_lock(args.out):
      rows = score_config_to_parquet(
        config, models, dataset, args.out, shard=shard, overwrite=args.overwrite, progress=progress
      )
    shutil.rmtree(partial, ignore_errors=True)
  print(f"wrote {args.out}: {rows} examples, scores {columns}")
  return 0


def _remove_fresh_partial(partial: Path) -> None:
  """Removes a resume folder this job made and saved nothing in."""
  from pruning.locking import LOCK_NAME

  for name in (LOCK_NAME, "proxy"):
    path = partial / name
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path, ignore_errors=True)
    elif path.is_file():
      path.unlink()
  try:
    partial.rmdir()
  except OSError:
    pass


def cmd_select(args) -> int:
  from pruning.manifest import Manifest
  from pruning.runtime.atomic import check_writable
  from pruning.selection import select

  check_writable(args.out, overwrite=args.overwrite)
  manifest = Manifest.read_parquet(args.manifest)
  if Path(args.out).exists() and Path(args.out).resolve() == Path(args.manifest).resolve():
    raise UserError(f"--out {args.out!r} is the manifest being read: write the subset to another file")
  subset = select(
    manifest,
    keep=args.keep,
    strategy=args.strategy,
    class_rule=args.class_rule,
    score=args.score,
    seed=args.seed,
    beta=args.beta,
    temperature=args.temperature,
    weighting=args.weighting,
    num_strata=args.num_strata,
    min_per_class=args.min_per_class,
  )
  with output_lock(args.out):
    subset.to_parquet(args.out, overwrite=args.overwrite)
  info = subset.selection
  print(
    f"wrote {args.out}: kept {info['kept']} of {info['of']} ({info['strategy']},"
    f" {info['class_rule']}); per class {info['kept_per_class']}"
  )
  return 0


def cmd_train(args) -> int:
  from pruning.config import parse_seeds
  from pruning.manifest import Manifest
  from pruning.pipeline import format_summary
  from pruning.retraining import retrain
  from pruning.runtime.atomic import check_writable, write_text

  if args.out:
    check_writable(args.out, overwrite=args.overwrite)
  subset = Manifest.read_parquet(args.subset) if args.subset else None
  config = _train_config(args)
  seeds = parse_seeds(args.seeds, where="--seeds")
  dataset = _load_data_for(args, subset) if subset is not None else _load_data(args)
  result = retrain(
    dataset,
    subset,
    model=args.model,
    model_options=_model_options(args.model_option),
    config=config,
    seeds=seeds,
    budget=args.budget,
    progress=not args.no_progress,
  )
  import pandas as pd

  print(format_summary(pd.DataFrame([result.summary()])))
  if args.out:
    report = {"summary": result.summary(), "per_seed": result.per_seed.to_dict(orient="records")}
    with output_lock(args.out):
      write_text(args.out, json.dumps(report, indent=2) + "\n", overwrite=args.overwrite)
    print(f"wrote {args.out}")
  return 0


def cmd_export(args) -> int:
  from pruning.export import check_export_output, export_subset
  from pruning.manifest import Manifest

  check_export_output(
    args.out, format=args.format, overwrite=args.overwrite, subset=args.subset, name=args.name, version=args.version
  )
  subset = Manifest.read_parquet(args.subset)
  dataset = _load_data_for(args, subset)
  with output_lock(args.out):
    path = export_subset(
      subset,
      dataset,
      args.out,
      format=args.format,
      overwrite=args.overwrite,
      name=args.name,
      version=args.version,
      rebalance=args.rebalance,
      seed=args.seed,
    )
  written = len(subset)
  if args.rebalance:
    from pruning.export import rebalanced_rows

    written = len(rebalanced_rows(subset.table["label"].to_numpy(), args.rebalance, seed=args.seed))
  print(
    f"wrote {path}: {written} examples as {args.format}"
    + (
      f" ({len(subset)} kept and {written - len(subset)} copies, rebalanced to {args.rebalance} of the largest class)"
      if args.rebalance
      else ""
    )
  )
  return 0


def cmd_run(args) -> int:
  from pruning.config import load_config, parse_config
  from pruning.pipeline import config_from_manifest, run_pipeline

  fingerprint = None
  if args.from_manifest:
    if args.config or args.data or args.holdout is not None or args.model or args.normalize:
      raise UserError(
        "--from-manifest repeats a recorded run exactly: drop the config file, --data,"
        " --holdout, --model and --normalize"
      )
    config, fingerprint = config_from_manifest(args.from_manifest)
    # A manifest is a file anyone may hand over: never let it choose where we write.
    config = dataclasses.replace(config, output=None)
  elif not args.config:
    raise UserError("pruning run needs a config file (e.g. pipelines/quickstart.yaml) or --from-manifest M")
  else:
    config = load_config(args.config)
  if args.data or args.holdout is not None or args.normalize:
    dataset = dataclasses.replace(
      config.dataset,
      spec=args.data or config.dataset.spec,
      holdout=args.holdout if args.holdout is not None else config.dataset.holdout,
      normalize=args.normalize or config.dataset.normalize,
    )
    config = dataclasses.replace(config, dataset=dataset)
  if args.model:
    config = parse_config(
      {**config.to_dict(), "model": args.model, "model_options": {}}, source=f"{args.config} with --model {args.model}"
    )
  run_pipeline(
    config,
    output_dir=args.output,
    overwrite=args.overwrite,
    progress=not args.no_progress,
    expect_fingerprint=fingerprint,
  )
  return 0


def cmd_report(args) -> int:
  import pandas as pd

  from pruning.manifest import Manifest
  from pruning.report import input_norms, score_correlations, seed_stability

  manifest = Manifest.read_parquet(args.manifest)
  if len(manifest) < 2:
    raise UserError(f"{args.manifest!r} has {len(manifest)} rows: a report needs at least two examples")
  norms = input_norms(manifest, _load_data(args)) if args.data else None
  with pd.option_context("display.width", 160, "display.max_columns", 50, "display.precision", 3):
    print("Seed stability (Spearman between seeds; Jaccard overlap of the hardest kept sets between seeds):")
    print(seed_stability(manifest).to_string(index=False))
    print("\nSpearman correlation between scores" + (" and the input norm:" if norms is not None else ":"))
    print(score_correlations(manifest, input_norm=norms).to_string())
  return 0


def _finish_distributed(part, args, index: int, count: int, *, partial) -> int:
  """Every process writes its part; after a barrier process 0 merges them."""
  from pruning import distributed
  from pruning.manifest import Manifest
  from pruning.shards import merge_parts

  path = distributed.part_path(args.out, index, count)
  part.to_parquet(path, overwrite=True)
  shutil.rmtree(partial, ignore_errors=True)
  distributed.barrier("pruning: parts written")
  if index == 0:
    paths = [distributed.part_path(args.out, i, count) for i in range(count)]
    manifest = merge_parts([Manifest.read_parquet(p) for p in paths], names=[str(p) for p in paths])
    manifest.to_parquet(args.out, overwrite=args.overwrite)
    for p in paths:
      p.unlink()
    print(f"wrote {args.out}: {len(manifest)} examples from {count} processes")
  distributed.barrier("pruning: manifest written")
  return 0


def cmd_merge(args) -> int:
  from pruning.manifest import Manifest
  from pruning.runtime.atomic import check_writable
  from pruning.shards import merge_parts

  check_writable(args.out, overwrite=args.overwrite)
  manifest = merge_parts([Manifest.read_parquet(p) for p in args.parts], names=list(args.parts))
  with output_lock(args.out):
    manifest.to_parquet(args.out, overwrite=args.overwrite)
  print(f"wrote {args.out}: {len(manifest)} examples from {len(args.parts)} parts")
  return 0


def cmd_check(args) -> int:
  from pruning.check import check_path

  problems = check_path(args.path, data=_load_data(args) if args.data else None)
  for problem in problems:
    print(f"problem: {problem}")
  if problems:
    print(f"{args.path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    return 1
  print(f"{args.path}: ok")
  return 0


def cmd_list(args) -> int:
  from pruning.models import MODELS, model_options
  from pruning.scores import available_scores
  from pruning.selection.class_quotas import DESCRIPTIONS as CLASS_RULE_DESCRIPTIONS
  from pruning.selection.strategies import DESCRIPTIONS as STRATEGY_DESCRIPTIONS

  def table(title: str, rows: list[tuple[str, str]]) -> None:
    print(title)
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
      print(f"  {name:<{width}}  {text}")

  table(
    "scores (NAME or NAME@EPOCH):",
    [(name, f"{score.harder + ' is harder':<17} {score.description}") for name, score in available_scores().items()],
  )
  table("models:", [(name, f"options: {model_options(name)}") for name in MODELS])
  table("strategies (--strategy):", list(STRATEGY_DESCRIPTIONS.items()))
  table("class rules (--class-rule):", list(CLASS_RULE_DESCRIPTIONS.items()))
  return 0


class OneLineParser(argparse.ArgumentParser):
  """argparse with its errors as one line (the usage is one `--help` away)."""

  def error(self, message):
    self.exit(2, f"pruning: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
  parser = OneLineParser(
    prog="pruning", description="Score training examples, select class-aware subsets, retrain and export."
  )
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

  run = commands.add_parser(
    "run",
    help="run a whole pipeline from a YAML config",
    description="Score, select, retrain and report, as a YAML config describes.",
  )
  run.add_argument("config", nargs="?", default=None, help="pipeline YAML file, e.g. pipelines/quickstart.yaml")
  run.add_argument(
    "--from-manifest",
    default=None,
    metavar="MANIFEST",
    help="re-run the pipeline recorded in a manifest's provenance (same config, seeds and data)",
  )
  run.add_argument("--output", default=None, help="run folder (default: the config's output, or runs/NAME)")
  run.add_argument("--overwrite", action="store_true", help="replace the files of an existing run folder")
  run.add_argument(
    "--data", default=None, metavar="SPEC", help="run on this dataset instead of the config's; " + DATA_HELP
  )
  run.add_argument(
    "--holdout",
    type=float,
    default=None,
    metavar="FRACTION",
    help="for data without a test split: hold out this fraction of the training split",
  )
  run.add_argument("--model", default=None, help="use this model (with its default options) instead of the config's")
  run.add_argument(
    "--normalize",
    default=None,
    choices=("auto", "per_feature", "per_channel", "global", "none"),
    help="input standardisation instead of the config's (dataset.normalize)",
  )
  _add_progress(run)
  run.set_defaults(func=cmd_run)

  score = commands.add_parser(
    "score",
    help="train proxies and write a manifest of scores",
    description="Train S proxy seeds (one compiled program) and score every training example.",
  )
  _add_data_options(score, required=False)
  _add_training_options(score, seeds_default=len(ProxyConfig.seeds), epochs_default=ProxyConfig.epochs)
  score.add_argument(
    "--score",
    action="append",
    default=None,
    help="score to compute, NAME or NAME@EPOCH (repeatable; default: el2n); see `pruning list`",
  )
  score.add_argument(
    "--shard",
    default=None,
    metavar="I/N",
    help="score only the I-th of N blocks of rows into a part file (0 <= I < N); join the parts with `pruning merge`",
  )
  score.add_argument(
    "--distributed",
    action="store_true",
    help="join a jax.distributed job: each process scores its share, process 0 writes the"
    " manifest (every process runs the same command)",
  )
  score.add_argument(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="--distributed: the coordinator's address (default: detected on Slurm, MPI, TPU)",
  )
  score.add_argument("--num-processes", type=int, default=None, help="--distributed: the number of processes")
  score.add_argument("--process-id", type=int, default=None, help="--distributed: this process's index")
  score.add_argument(
    "--from-manifest",
    default=None,
    metavar="MANIFEST",
    help="re-score with the data, model, training, seeds and scores a manifest records",
  )
  score.add_argument(
    "--vog-checkpoints",
    type=int,
    default=None,
    metavar="K",
    help="VoG reads K evenly spaced proxy epochs (default: every epoch)",
  )
  score.add_argument(
    "--dynamics-window",
    type=int,
    default=ProxyConfig.dynamics_window,
    metavar="J",
    help="epochs per window of dynamic_uncertainty (default: %(default)s, as He et al.)",
  )
  score.add_argument(
    "--proxies",
    default=None,
    metavar="DIR",
    help="train the proxies once into DIR and reuse them: shards given the same DIR train"
    " only once (the first trains, the others wait and load)",
  )
  score.add_argument(
    "--train-only",
    action="store_true",
    help="with --proxies: train and save the proxies, score nothing (run the shards next)",
  )
  score.add_argument(
    "--backend",
    default="local",
    choices=("local", "ray"),
    help="ray: train once and score the shards as Ray tasks (pip install 'pruning[ray]')",
  )
  score.add_argument(
    "--ray-address",
    default=None,
    metavar="ADDRESS",
    help="--backend ray: the cluster to join, e.g. ray://head:10001 or auto (default: start a local Ray)",
  )
  score.add_argument(
    "--num-shards",
    type=int,
    default=None,
    metavar="N",
    help="--backend ray: score in N tasks (default: one per CPU of the cluster)",
  )
  _add_output(score, "manifest Parquet file to write", required=False)
  _add_progress(score)
  score.set_defaults(func=cmd_score)

  sel = commands.add_parser(
    "select",
    help="select a subset from a manifest",
    description="Keep a fraction or count of examples by a strategy and a class rule.",
  )
  sel.add_argument("manifest", help="manifest Parquet file")
  sel.add_argument("--keep", required=True, help="a fraction in (0, 1], e.g. 0.5 or 50%%, or a count, e.g. 700")
  sel.add_argument(
    "--strategy",
    default=SelectionConfig.strategy,
    help="hardest, easiest, random, offset (drop the hardest --beta first), ccs (coverage-centric:"
    " drop the hardest --beta, sample evenly across score strata) or probabilistic"
    " (sample by difficulty) (default: hardest)",
  )
  sel.add_argument(
    "--class-rule",
    default=SelectionConfig.class_rule,
    help="proportional (same fraction per class), balanced (equal counts), global (no quotas),"
    " drop (quotas by each class's smoothed validation error; needs a manifest scored with a"
    " validation split) or drop_raw (the DRoP paper's raw error, which can drop a class whole)"
    f" (default: {SelectionConfig.class_rule})",
  )
  sel.add_argument(
    "--min-per-class", type=int, default=None, help="every class keeps at least this many examples (or all it has)"
  )
  sel.add_argument("--score", default=None, help="score column to rank by (default: the only one)")
  sel.add_argument("--seed", type=int, default=0, help="seed of random, ccs and probabilistic (default: 0)")
  sel.add_argument(
    "--beta", type=float, default=0.1, help="offset and ccs: fraction of hardest examples dropped (default: 0.1)"
  )
  sel.add_argument("--num-strata", type=int, default=50, help="ccs: equal-width score strata (default: 50)")
  sel.add_argument("--temperature", type=float, default=1.0, help="probabilistic: softmax temperature (default: 1)")
  sel.add_argument(
    "--weighting",
    default="softmax",
    help="probabilistic: softmax(difficulty / T) or linear in difficulty (default: softmax)",
  )
  _add_output(sel, "subset manifest Parquet file to write")
  sel.set_defaults(func=cmd_select)

  train = commands.add_parser(
    "train",
    help="train on all data or a subset and evaluate on the test split",
    description="Retrain a fresh model and report accuracy, balanced accuracy,"
    " per-class and worst-class recall and macro-F1 on the test split.",
  )
  _add_data_options(train)
  train.add_argument("--subset", default=None, help="subset manifest to train on (default: all data)")
  _add_training_options(train, seeds_default=len(RetrainConfig.seeds), epochs_default=TrainConfig.epochs)
  train.add_argument(
    "--budget",
    default="steps",
    help="steps: as many steps as --epochs on the full data (Data Diet); epochs: --epochs of the subset",
  )
  _add_output(train, "JSON file for the metrics (optional)", required=False)
  _add_progress(train)
  train.set_defaults(func=cmd_train)

  export = commands.add_parser(
    "export",
    help="export a subset's examples",
    description="Write the kept examples as an id list, a Parquet table, an .npz,"
    " a TFDS dataset (OUT/NAME/VERSION) or an image folder (OUT/SPLIT/CLASS/ID.png).",
  )
  export.add_argument("subset", help="subset manifest Parquet file")
  _add_data_options(export)
  export.add_argument("--format", default="npz", help="ids, parquet, npz, tfds or images (default: npz)")
  export.add_argument("--name", default=None, help="tfds: the new dataset's name (snake_case)")
  export.add_argument("--version", default="1.0.0", help="tfds: the new dataset's version (default: 1.0.0)")
  export.add_argument(
    "--rebalance",
    type=float,
    default=None,
    metavar="RATIO",
    help="oversample kept minority classes to RATIO x the largest class (1: full balance)",
  )
  export.add_argument("--seed", type=int, default=0, help="seed of --rebalance's sampling (default: 0)")
  _add_output(export, "file to write (for tfds: the data dir; for images: the folder)")
  export.set_defaults(func=cmd_export)

  report = commands.add_parser(
    "report",
    help="seed stability and correlations of a manifest's scores",
    description="Per score: Spearman correlation between seeds and overlap of the"
    " kept sets between seeds at 30/50/70% kept; correlations between scores"
    " (and with the input norm when --data is given).",
  )
  report.add_argument("manifest", help="manifest Parquet file")
  _add_data_options(report, required=False)
  report.set_defaults(func=cmd_report)

  merge = commands.add_parser(
    "merge",
    help="join the part files of a sharded scoring job into a manifest",
    description="Check that the parts come from one job and cover every example exactly once, then write the manifest.",
  )
  merge.add_argument("parts", nargs="+", help="part files written by `pruning score --shard I/N`")
  _add_output(merge, "manifest Parquet file to write")
  merge.set_defaults(func=cmd_merge)

  check = commands.add_parser(
    "check",
    help="validate a manifest or a run folder (exit 1 if anything is wrong)",
    description="Validate a manifest, a subset or a run folder and list every problem:"
    " exit status 0 when sound, 1 when problems were found, 2 on bad input.",
  )
  check.add_argument("path", help="manifest Parquet file or run folder")
  _add_data_options(check, required=False)
  check.set_defaults(func=cmd_check)

  listing = commands.add_parser("list", help="list scores, models, strategies and class rules")
  listing.set_defaults(func=cmd_list)
  return parser


def main(argv=None) -> int:
  try:
    args = build_parser().parse_args(argv)
  except SystemExit as done:  # --help, or a one-line usage error
    return done.code if isinstance(done.code, int) else 2
  set_progress(not getattr(args, "no_progress", False))
  if getattr(args, "score", None) is None and args.command == "score":
    args.score = ["el2n"]
  try:
    from pruning.manifest import creation_time

    creation_time()  # a bad SOURCE_DATE_EPOCH is refused before any work, not when the manifest is written
    return args.func(args)
  except UserError as error:
    print(f"pruning: error: {error}", file=sys.stderr)
    return 2
  except MemoryError:
    print("pruning: error: out of memory: use less data, fewer seeds or a smaller model", file=sys.stderr)
    return 2
  except BrokenPipeError:  # `pruning list | head`: the reader left; not an error of ours
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141
  except OSError as error:
    # What the checks before each write did not foresee (a full disk, a folder
    # removed mid-run): still one line; atomic writes left nothing half-written.
    where = f" {error.filename!r}" if error.filename else ""
    print(
      f"pruning: error: cannot read or write{where} ({error.strerror or error}): check the path, its"
      " permissions and free space",
      file=sys.stderr,
    )
    return 2
  except KeyboardInterrupt:
    print("pruning: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
