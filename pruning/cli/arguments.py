"""The `pruning` command's arguments: every command, every flag, its help and its default.

Defaults come from the config dataclasses (`pruning.config`,
`pruning.training.TrainConfig`) and the choices from the registries, so
nothing is written twice; the flags several commands share are in
`pruning.cli.flag_groups`.
"""

from __future__ import annotations

import argparse

from pruning import __version__
from pruning.cli.flag_groups import (
  DATA_HELP,
  OneLineParser,
  add_data_options,
  add_fields,
  add_output,
  add_progress,
  add_remedy_options,
  add_training_options,
  choices_text,
)
from pruning.config import ProxyConfig, RetrainConfig
from pruning.data.csv import CATEGORICAL
from pruning.export import EXPORT_FORMATS
from pruning.flagging import FlagOptions
from pruning.influence import SPLITS, TARGETS
from pruning.retraining import BUDGETS
from pruning.selection import SelectionRule
from pruning.training import TrainConfig


def build_parser() -> argparse.ArgumentParser:
  parser = OneLineParser(
    prog="pruning", description="Score training examples, select class-aware subsets, retrain and export."
  )
  parser.add_argument("--version", action="version", version=f"pruning {__version__}")
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
    "--model-option",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a model option (repeatable): with --model, on its defaults; else on the config's options,"
    " e.g. checkpoint=/models/bert-base-uncased",
  )
  run.add_argument(
    "--normalize",
    default=None,
    choices=("auto", "per_feature", "per_channel", "global", "none"),
    help="input standardisation instead of the config's (dataset.normalize)",
  )
  run.add_argument("--label-column", default=None, help="the label column of a table instead of the config's")
  run.add_argument(
    "--categorical",
    default=None,
    choices=CATEGORICAL,
    help="text feature columns of a table: refuse or onehot, instead of the config's",
  )
  run.add_argument("--text-column", default=None, help="text data: the text column instead of the config's")
  run.add_argument("--text-pair-column", default=None, help="text data: a second text column, for sentence pairs")
  run.add_argument("--max-length", type=int, default=None, help="text data: tokens per example instead of the config's")
  add_progress(run)

  score = commands.add_parser(
    "score",
    help="train proxies and write a manifest of scores",
    description="Train S proxy seeds (one compiled program) and score every training example.",
  )
  add_data_options(score, required=False)
  add_training_options(
    score, seeds_default=len(ProxyConfig.seeds), epochs_default=ProxyConfig().epochs or TrainConfig().epochs
  )
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
  add_fields(score, ProxyConfig)
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
  add_output(score, "manifest Parquet file to write", required=False)
  add_progress(score)

  sel = commands.add_parser(
    "select",
    help="select a subset from a manifest",
    description="Keep a fraction or count of examples by a strategy and a class rule.",
  )
  sel.add_argument("manifest", help="manifest Parquet file")
  sel.add_argument("--keep", required=True, help="a fraction in (0, 1], e.g. 0.5 or 50%%, or a count, e.g. 700")
  add_fields(sel, SelectionRule)
  add_output(sel, "subset manifest Parquet file to write")

  flag = commands.add_parser(
    "flag",
    help="flag likely wrong labels in a manifest",
    description="Estimate how many labels of each class are wrong and flag them: is_suspect, with the given"
    " and likely label and the evidence. Retrains the manifest's proxies (K folds, or with threshold samples).",
  )
  flag.add_argument("manifest", help="manifest Parquet file (a whole scored dataset)")
  add_data_options(flag, required=False, recorded=True)
  add_fields(flag, FlagOptions)
  flag.add_argument(
    "--suspects", default=None, metavar="PATH", help="also write the suspects alone, for relabelling (.parquet or .csv)"
  )
  add_output(flag, "flagged manifest Parquet file to write")
  add_progress(flag)

  influence = commands.add_parser(
    "influence",
    help="which training examples made each prediction (TracIn)",
    description="TracIn over the proxies' checkpoints: for each explained example, the training examples whose"
    " gradient steps lowered its loss most (proponents) and raised it most (opponents). Retrains the manifest's"
    " proxies, keeping --tracin-checkpoints states; exact over every parameter, or projected with --projection.",
  )
  influence.add_argument("manifest", help="manifest Parquet file (a whole scored dataset)")
  add_data_options(influence, required=False, recorded=True)
  influence.add_argument(
    "--test",
    default="errors",
    metavar="WHICH",
    help="errors (the proxies' wrong predictions), all, or example ids ID,ID,... (default: %(default)s)",
  )
  influence.add_argument(
    "--split", default="test", choices=SPLITS, help="the split of the examples to explain (default: %(default)s)"
  )
  influence.add_argument(
    "--target",
    default="label",
    choices=TARGETS,
    help="the loss explained: at the example's label (TracIn as published) or at the proxies' prediction"
    " (default: %(default)s)",
  )
  influence.add_argument(
    "--top", type=int, default=10, metavar="K", help="proponents and opponents per example (default: %(default)s)"
  )
  influence.add_argument(
    "--projection",
    type=int,
    default=None,
    metavar="K",
    help="LoGra: project each layer's inputs and output gradients to K dimensions (default: exact)",
  )
  influence.add_argument(
    "--fisher-damping",
    type=float,
    default=None,
    metavar="L",
    help="with --projection: through the inverse of the projected gradients' Fisher, damped by L times its mean"
    " eigenvalue (e.g. 1; default: plain TracIn)",
  )
  influence.add_argument(
    "--tracin-checkpoints",
    type=int,
    default=None,
    metavar="K",
    help="evenly spaced proxy epochs to sum over (default: as the manifest records)",
  )
  influence.add_argument(
    "--totals", default=None, metavar="PATH", help="also write each training example's summed influence"
  )
  add_output(influence, "table of proponents and opponents to write (.parquet or .csv)")
  add_progress(influence)

  train = commands.add_parser(
    "train",
    help="train on all data or a subset and evaluate on the test split",
    description="Retrain a fresh model and report accuracy, balanced accuracy,"
    " per-class and worst-class recall and macro-F1 on the test split.",
  )
  add_data_options(train, required=False, recorded=True)
  train.add_argument("--subset", default=None, help="subset manifest to train on (default: all data)")
  add_training_options(train, seeds_default=len(RetrainConfig.seeds), epochs_default=TrainConfig.epochs)
  train.add_argument(
    "--budget",
    default=RetrainConfig.budget,
    help=f"{choices_text(BUDGETS)}. steps: as many steps as --epochs on the full data (Data Diet); epochs: --epochs"
    " of the subset (default: %(default)s)",
  )
  add_remedy_options(train)
  train.add_argument(
    "--figures",
    default=None,
    metavar="DIR",
    help="write roc.png, pr.png (one-vs-rest, with each class's prevalence) and confusion.png into DIR",
  )
  add_output(train, "JSON file for the metrics (optional)", required=False)
  add_progress(train)

  export = commands.add_parser(
    "export",
    help="export a subset's examples",
    description="Write the kept examples as an id list, a Parquet table, an .npz,"
    " a TFDS dataset (OUT/NAME/VERSION) or an image folder (OUT/SPLIT/CLASS/ID.png).",
  )
  export.add_argument("subset", help="subset manifest Parquet file")
  add_data_options(export, required=False, recorded=True)
  export.add_argument("--format", default="npz", help=f"{choices_text(EXPORT_FORMATS)} (default: %(default)s)")
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
  add_output(export, "file to write (for tfds: the data dir; for images: the folder)")

  report = commands.add_parser(
    "report",
    help="seed stability and correlations of a manifest's scores",
    description="Per score: Spearman correlation between seeds and overlap of the"
    " kept sets between seeds at 30/50/70% kept; correlations between scores"
    " (and with the input norm when --data is given).",
  )
  report.add_argument("manifest", help="manifest Parquet file")
  add_data_options(report, required=False, recorded=True)

  merge = commands.add_parser(
    "merge",
    help="join the part files of a sharded scoring job into a manifest",
    description="Check that the parts come from one job and cover every example exactly once, then write the manifest.",
  )
  merge.add_argument("parts", nargs="+", help="part files written by `pruning score --shard I/N`")
  add_output(merge, "manifest Parquet file to write")

  check = commands.add_parser(
    "check",
    help="validate a manifest or a run folder (exit 1 if anything is wrong)",
    description="Validate a manifest, a subset or a run folder and list every problem:"
    " exit status 0 when sound, 1 when problems were found, 2 on bad input.",
  )
  check.add_argument("path", help="manifest Parquet file or run folder")
  add_data_options(check, required=False, recorded=True)

  commands.add_parser("list", help="list scores, models, strategies and class rules")
  for command in commands.choices.values():
    command.add_argument(
      "--plugin",
      action="append",
      default=[],
      metavar="MODULE",
      help="import your module (a name on the Python path or in the working folder, or a .py file) first,"
      " so the models, scores and sources it registers can be named (repeatable)",
    )
  return parser
