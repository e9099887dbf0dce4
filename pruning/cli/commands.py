"""The `pruning` commands, one function each: read the flags, call the library, print what was written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from pruning.cli.options import (
  REMEDY_FLAGS,
  flags,
  given_data_options,
  load_data,
  load_data_for,
  score_config,
  train_config,
)
from pruning.config import load_config, parse_model_options
from pruning.data import DATA_SOURCES, load_dataset_for
from pruning.errors import UserError
from pruning.evaluation import describe_proxy_accuracy
from pruning.export import EXPORT_FORMATS, check_export_output, export_subset, rebalanced_rows
from pruning.flagging import FLAGGING_METHODS, FlagOptions, flag_label_issues, ranking_score
from pruning.flagging.suspects import check_suspects_output, write_suspects
from pruning.jobs import (
  BACKENDS,
  check_path,
  config_from_manifest,
  format_summary,
  merge_parts,
  output_lock,
  parse_shard,
  run_pipeline,
  score_job,
)
from pruning.manifest import Manifest
from pruning.models import MODELS, model_options
from pruning.report import input_norms, score_correlations, seed_stability
from pruning.retraining import FIGURES, REMEDIES, RemedyOptions, retrain, write_test_figures
from pruning.retraining.remedies import check_remedy_options
from pruning.runtime.atomic import check_distinct_paths, check_writable, write_text
from pruning.runtime.validation import parse_seeds
from pruning.scores import available_scores, parse_requests
from pruning.selection import CLASS_RULES, STRATEGIES, SelectionRule, select
from pruning.training import ModelSpec


def cmd_score(args) -> int:
  if args.train_only and not args.proxies:
    raise UserError("--train-only saves the proxies for later jobs: give the folder with --proxies DIR")
  if not args.train_only and not args.out:
    raise UserError("pruning score needs --out PATH, the manifest to write (or --train-only with --proxies)")
  if args.backend == "ray" and (args.shard or args.distributed or args.proxies):
    raise UserError("--backend ray shards, trains and merges the job itself: drop --shard, --distributed and --proxies")
  if args.distributed and (args.shard or args.proxies):
    raise UserError("--distributed shards the rows and trains on every process itself: drop --shard and --proxies")
  shard = parse_shard(args.shard) if args.shard else None
  fingerprint = tokenizer_json = None
  if args.from_manifest:
    config, fingerprint, tokenizer_json = config_from_manifest(args.from_manifest)
  elif not args.data:
    raise UserError("pruning score needs --data SPEC (or --from-manifest M to repeat a manifest's run)")
  else:
    parse_requests(args.score)
    config = score_config(args)
  name = (
    "ray" if args.backend == "ray" else "distributed" if args.distributed else "shared" if args.proxies else "local"
  )
  backend = BACKENDS[name](**flags(args, BACKENDS[name], address="ray_address"))
  result = score_job(
    config,
    None if args.train_only else args.out,
    shard=shard,
    overwrite=args.overwrite,
    fingerprint=fingerprint,
    fingerprint_source=f"--from-manifest {args.from_manifest}",
    tokenizer_json=tokenizer_json,
    backend=backend,
    progress=not args.no_progress,
  )
  columns = ", ".join(r.column for r in parse_requests(config.scores))
  if result.out is None and args.train_only:
    print(
      f"trained {len(config.proxy.seeds)} proxies into {args.proxies}/: score with the same command,"
      " --train-only replaced by --shard I/N or --out"
    )
  elif result.out is not None:
    parts = f" from {result.parts} processes" if args.distributed else ""
    print(f"wrote {result.out}: {result.rows} examples{parts}, scores {columns}")
  return 0


def cmd_select(args) -> int:
  check_distinct_paths({"--out": args.out}, {"the manifest": args.manifest})
  check_writable(args.out, overwrite=args.overwrite)
  manifest = Manifest.read_parquet(args.manifest)
  subset = select(manifest, SelectionRule(**flags(args, SelectionRule)))
  with output_lock(args.out):
    subset.to_parquet(args.out, overwrite=args.overwrite)
  info = subset.selection or {}
  print(
    f"wrote {args.out}: kept {info['kept']} of {info['of']} ({info['strategy']}, {info['class_rule']});"
    f" per class {info['kept_per_class']}"
  )
  return 0


def cmd_flag(args) -> int:
  options = FlagOptions(**flags(args, FlagOptions))
  check_distinct_paths({"--out": args.out, "--suspects": args.suspects}, {"the manifest": args.manifest})
  check_writable(args.out, overwrite=args.overwrite)
  if args.suspects:
    check_suspects_output(args.suspects, overwrite=args.overwrite)
  manifest = Manifest.read_parquet(args.manifest)
  if options.method == "ranked":
    ranking_score(manifest, options.score)  # a missing score is refused before any training
  dataset = load_data_for(args, manifest)
  flagged = flag_label_issues(manifest, dataset, options=options, progress=not args.no_progress)
  with output_lock(args.out):
    flagged.to_parquet(args.out, overwrite=args.overwrite)
  if args.suspects:
    write_suspects(flagged, dataset, args.suspects, overwrite=args.overwrite)
  record = flagged.provenance["flagging"]
  estimate = record.get("estimated_per_class")
  print(
    f"wrote {args.out}: {record['flagged']} of {len(flagged)} examples flagged ({record['method']});"
    f" per class {record['flagged_per_class']}"
    + (f"; estimated wrong per class {[round(e) for e in estimate]}" if estimate else "")
    + (f"; suspects in {args.suspects}" if args.suspects else "")
    + (
      "; the test split was not examined (--split all does)"
      if dataset.test is not None and "test" not in record
      else ""
    )
  )
  if "test" in record:
    test = record["test"]
    print(
      f"test split: {test['flagged']} of {test['num_examples']} examples flagged (confident learning, proxies that"
      f" never saw it); per class {test['flagged_per_class']}"
    )
  if record.get("out_of_fold_accuracy"):
    print(describe_proxy_accuracy(record["out_of_fold_accuracy"]))
  return 0


def cmd_influence(args) -> int:
  from pruning.influence import check_top, explain, write_table
  from pruning.scores.tracin import check_fisher_damping

  check_distinct_paths({"--out": args.out, "--totals": args.totals}, {"the manifest": args.manifest})
  check_writable(args.out, overwrite=args.overwrite)
  if args.totals:
    check_writable(args.totals, overwrite=args.overwrite)
  if args.projection is not None and args.projection < 1:
    raise UserError(f"--projection {args.projection} must be a whole number of dimensions >= 1, e.g. 64")
  check_fisher_damping(args.fisher_damping, args.projection)
  test = args.test if args.test in ("errors", "all") else [t.strip() for t in args.test.split(",") if t.strip()]
  manifest = Manifest.read_parquet(args.manifest)
  check_top(args.top, len(manifest))  # before the proxies train
  dataset = load_data_for(args, manifest)
  result = explain(
    manifest,
    dataset,
    test=test,
    split=args.split,
    target=args.target,
    checkpoints=args.tracin_checkpoints,
    projection=args.projection,
    fisher_damping=args.fisher_damping,
    progress=not args.no_progress,
  )
  write_table(result.table(args.top), args.out, overwrite=args.overwrite)
  if args.totals:
    write_table(result.totals.reset_index(), args.totals, overwrite=args.overwrite)
  how = "exact" if args.projection is None else f"projected to {args.projection}"
  if args.fisher_damping is not None:
    how += f", through the inverse Fisher damped by {args.fisher_damping:g}"
  print(
    f"wrote {args.out}: top {args.top} proponents and opponents of {len(result.test_ids)} {args.split} examples"
    f" ({how}; checkpoints at epochs {result.checkpoints}, averaged over {len(manifest.provenance['seeds'])} seeds)"
    + (f"; totals in {args.totals}" if args.totals else "")
  )
  if not result.kept:
    print(
      "the proxies were trained again for their TracIn checkpoints (now kept for the next call);"
      " `pruning score --keep-checkpoints` keeps them as the proxies are scored"
    )
  return 0


def cmd_train(args) -> int:
  figures = {f"--figures {name}": Path(args.figures) / name for name in FIGURES} if args.figures else {}
  check_distinct_paths({"--out": args.out, **figures}, {"--subset": args.subset})
  if args.out:
    check_writable(args.out, overwrite=args.overwrite)
  for path in figures.values():  # before hours of training, not after
    check_writable(path, overwrite=args.overwrite)
  subset = Manifest.read_parquet(args.subset) if args.subset else None
  config, seeds = train_config(args), parse_seeds(args.seeds, where="--seeds")
  dataset = load_data_for(args, subset, what="subset") if subset is not None else load_data(args)
  remedy_options = RemedyOptions(**flags(args, RemedyOptions))
  defaults = dataclasses.asdict(RemedyOptions())
  given = {k: v for k, v in dataclasses.asdict(remedy_options).items() if v != defaults[k]}
  check_remedy_options([args.remedy], given, flags=REMEDY_FLAGS)
  result = retrain(
    dataset,
    subset,
    spec=ModelSpec(model=args.model, options=parse_model_options(args.model_option), seeds=seeds, training=config),
    budget=args.budget,
    remedy=args.remedy,
    remedy_options=remedy_options,
    progress=not args.no_progress,
  )
  print(format_summary(pd.DataFrame([result.summary()])))
  if result.per_class is not None:
    with pd.option_context("display.width", 160, "display.precision", 3):
      print("\nPer class (means over seeds):\n" + result.per_class.to_string(index=False))
  if args.figures:
    for path in write_test_figures(result, dataset, args.figures, overwrite=args.overwrite):
      print(f"wrote {path}")
  if args.out:
    report = {
      "summary": result.summary(),
      "per_seed": result.per_seed.to_dict(orient="records"),
      "per_class": None if result.per_class is None else result.per_class.to_dict(orient="records"),
    }
    with output_lock(args.out):
      write_text(args.out, json.dumps(report, indent=2) + "\n", overwrite=args.overwrite)
    print(f"wrote {args.out}")
  return 0


def cmd_export(args) -> int:
  check_distinct_paths({"--out": args.out}, {"the subset": args.subset})
  check_export_output(
    args.out, format=args.format, overwrite=args.overwrite, subset=args.subset, name=args.name, version=args.version
  )
  subset = Manifest.read_parquet(args.subset)
  dataset = load_data_for(args, subset, what="subset")
  with output_lock(args.out):
    options = {key: getattr(args, key) for key in ("format", "overwrite", "name", "version", "rebalance", "seed")}
    path = export_subset(subset, dataset, args.out, **options)
  written = len(subset)
  if args.rebalance:
    written = len(rebalanced_rows(subset.table["label"].to_numpy(), args.rebalance, seed=args.seed))
    how = (
      f" ({len(subset)} kept and {written - len(subset)} copies, rebalanced to {args.rebalance} of the largest class)"
    )
  print(f"wrote {path}: {written} examples as {args.format}" + (how if args.rebalance else ""))
  return 0


def cmd_run(args) -> int:
  fingerprint = tokenizer_json = None
  if args.from_manifest:
    data_flags = (args.label_column, args.categorical, args.text_column, args.text_pair_column, args.max_length)
    if (
      args.config
      or args.data
      or args.holdout is not None
      or args.model
      or args.model_option
      or args.normalize
      or any(f is not None for f in data_flags)
    ):
      raise UserError(
        "--from-manifest repeats a recorded run exactly: drop the config file and the data and model flags"
      )
    config, fingerprint, tokenizer_json = config_from_manifest(args.from_manifest)
    # A manifest is a file anyone may hand over: never let it choose where we write.
    config = dataclasses.replace(config, output=None)
  elif not args.config:
    raise UserError("pruning run needs a config file (e.g. pipelines/quickstart.yaml) or --from-manifest M")
  else:
    config = load_config(args.config)
  if args.plugin:  # recorded with the config, so what re-reads it knows which plugins it needs
    config = dataclasses.replace(config, plugins=tuple(dict.fromkeys([*config.plugins, *args.plugin])))
  config = config.with_overrides(
    data=args.data,
    holdout=args.holdout,
    normalize=args.normalize,
    model=args.model,
    model_options=parse_model_options(args.model_option),
    source=args.config,
    label_column=args.label_column,
    categorical=args.categorical,
    text_column=args.text_column,
    text_pair_column=args.text_pair_column,
    max_length=args.max_length,
  )
  run_pipeline(
    config,
    output_dir=args.output,
    overwrite=args.overwrite,
    progress=not args.no_progress,
    expect_fingerprint=fingerprint,
    tokenizer_json=tokenizer_json,
  )
  return 0


def cmd_report(args) -> int:
  manifest = Manifest.read_parquet(args.manifest)
  if len(manifest) < 2:
    raise UserError(f"{args.manifest!r} has {len(manifest)} rows: a report needs at least two examples")
  norms = input_norms(manifest, load_data_for(args, manifest)) if given_data_options(args) else None
  with pd.option_context("display.width", 160, "display.max_columns", 50, "display.precision", 3):
    print("Seed stability (Spearman between seeds; Jaccard overlap of the hardest kept sets between seeds):")
    print(seed_stability(manifest).to_string(index=False))
    print("\nSpearman correlation between scores" + (" and the input norm:" if norms is not None else ":"))
    print(score_correlations(manifest, input_norm=norms).to_string())
  return 0


def cmd_merge(args) -> int:
  check_distinct_paths({"--out": args.out}, {f"part {i}": p for i, p in enumerate(args.parts)})
  check_writable(args.out, overwrite=args.overwrite)
  manifest = merge_parts([Manifest.read_parquet(p) for p in args.parts], names=list(args.parts))
  with output_lock(args.out):
    manifest.to_parquet(args.out, overwrite=args.overwrite)
  print(f"wrote {args.out}: {len(manifest)} examples from {len(args.parts)} parts")
  return 0


def cmd_check(args) -> int:
  data, given = None, given_data_options(args)
  if given:  # the data the manifest (or the run folder's manifest) was made from
    where = Path(args.path)
    try:
      manifest = Manifest.read_parquet(where / "manifest.parquet" if where.is_dir() else where)
    except UserError:
      manifest = None  # check_path reports the damaged manifest itself
    data = load_data(args) if manifest is None else load_dataset_for(manifest.provenance, **given)[0]
  problems = check_path(args.path, data=data)
  for problem in problems:
    print(f"problem: {problem}")
  if problems:
    print(f"{args.path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    return 1
  print(f"{args.path}: ok")
  return 0


def cmd_list(args) -> int:
  def table(title: str, rows: list[tuple[str, str]]) -> None:
    print(title)
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
      print(f"  {name:<{width}}  {text}")

  scores = available_scores().items()
  table("scores (NAME or NAME@EPOCH):", [(n, f"{s.harder + ' is harder':<17} {s.description}") for n, s in scores])
  table("models:", [(name, f"options: {model_options(name)}") for name in MODELS])
  table("strategies (--strategy):", list(STRATEGIES.descriptions().items()))
  table("class rules (--class-rule):", list(CLASS_RULES.descriptions().items()))
  table("remedies (--remedy):", list(REMEDIES.descriptions().items()))
  table("data sources (--data):", [(s.usage(n), DATA_SOURCES.descriptions()[n]) for n, s in DATA_SOURCES.items()])
  table("export formats (--format):", list(EXPORT_FORMATS.descriptions().items()))
  table("flagging methods (pruning flag --method):", list(FLAGGING_METHODS.descriptions().items()))
  return 0


COMMANDS = {
  "run": cmd_run,
  "score": cmd_score,
  "flag": cmd_flag,
  "select": cmd_select,
  "influence": cmd_influence,
  "train": cmd_train,
  "export": cmd_export,
  "report": cmd_report,
  "merge": cmd_merge,
  "check": cmd_check,
  "list": cmd_list,
}
