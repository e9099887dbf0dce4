"""The `pruning` command's arguments: every flag, its help and its default.

Defaults come from the config dataclasses (`pruning.config`,
`pruning.training.TrainConfig`) and the choices from the registries, so
nothing is written twice.
"""

from __future__ import annotations

import argparse
import difflib
import re

from pruning import __version__
from pruning.config import DataConfig, ProxyConfig, RetrainConfig, SelectionConfig
from pruning.data import DATA_SOURCES
from pruning.data.csv import CATEGORICAL
from pruning.data.normalization import MODES as NORMALIZE_MODES
from pruning.data.transforms import NOISE_KINDS
from pruning.export import EXPORT_FORMATS
from pruning.flagging import FLAGGING_METHODS, SPLITS, FlagOptions
from pruning.models import MODELS
from pruning.retraining import BUDGETS, REMEDIES, RemedyOptions
from pruning.selection import CLASS_RULES, STRATEGIES
from pruning.selection.strategies import WEIGHTINGS
from pruning.training import OPTIMIZERS, SCHEDULES, TrainConfig

DATA_HELP = "dataset spec: " + ", ".join(DATA_SOURCES.usages())
DATA = DataConfig(spec="")
SELECTION = SelectionConfig(name="cli")
FLAG = FlagOptions()
PIPELINE_MODEL = "mlp"


def _choices(names) -> str:
  names = list(names)
  return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _described(registry) -> str:
  return "; ".join(f"{name}: {text}" for name, text in registry.descriptions().items())


def _add_data_options(parser: argparse.ArgumentParser, *, required: bool = True, recorded: bool = False) -> None:
  """The data flags. `recorded`: a command on a manifest's data, whose every
  data option defaults to what the manifest records (a flag given overrides)."""
  actions = parser._actions[:]
  parser.add_argument(
    "--data",
    required=required,
    metavar="SPEC",
    help=DATA_HELP + (" (default: as the manifest records)" if recorded else ""),
  )
  parser.add_argument(
    "--label-column", default=DATA.label_column, help="label column of a table (default: %(default)s)"
  )
  parser.add_argument("--data-dir", default=None, help="where TFDS finds prepared datasets")
  parser.add_argument(
    "--test-split", default=DATA.test_split, help="TFDS split used for testing (default: %(default)s)"
  )
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
  parser.add_argument(
    "--label-noise-kind",
    default=DATA.label_noise_kind,
    choices=NOISE_KINDS,
    help="symmetric: to a uniformly drawn other class; pairs: class c to c + 1 (default: %(default)s)",
  )
  parser.add_argument(
    "--data-seed", type=int, default=DATA.seed, help="seed of holdouts and transforms (default: %(default)s)"
  )
  parser.add_argument(
    "--normalize",
    default=DATA.normalize,
    choices=NORMALIZE_MODES,
    help="input standardisation for training: auto (per feature for tables, per channel for"
    " images), per_feature, per_channel, global or none (default: %(default)s)",
  )
  parser.add_argument(
    "--categorical",
    default=DATA.categorical,
    choices=CATEGORICAL,
    help="text feature columns of a CSV or Parquet table: refuse them, or one-hot encode them (default: %(default)s)",
  )
  parser.add_argument(
    "--text-column",
    default=DATA.text_column,
    help="text data: the column (or TFDS feature) of text (default: 'text' when the table has one)",
  )
  parser.add_argument(
    "--text-pair-column", default=DATA.text_pair_column, help="text data: a second text column, for sentence pairs"
  )
  parser.add_argument(
    "--tokenizer",
    default=DATA.tokenizer,
    help="text data: wordpiece or bpe (trained on the training split), or a checkpoint folder with"
    " tokenizer.json or vocab.txt (default: %(default)s)",
  )
  parser.add_argument(
    "--vocab-size", type=int, default=DATA.vocab_size, help="a trained tokenizer's vocabulary (default: %(default)s)"
  )
  parser.add_argument(
    "--max-length",
    type=int,
    default=DATA.max_length,
    help="text data: tokens per example, special tokens included; longer text is truncated (default: %(default)s)",
  )
  parser.add_argument(
    "--stream",
    action="store_true",
    help="read Parquet/TFDS training features a row group at a time into a memory-mapped"
    " file instead of into memory (an uncompressed .npz is always mapped)",
  )
  if recorded:
    for action in parser._actions:
      if action not in actions and action.dest != "data":
        action.default = None
        action.help = re.sub(r"\(default: [^)]*\)", "(default: as the manifest records)", action.help or "")


def _add_training_options(parser: argparse.ArgumentParser, *, seeds_default: int, epochs_default: int) -> None:
  parser.add_argument("--model", default=PIPELINE_MODEL, help=f"{_choices(MODELS)} (default: %(default)s)")
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
  parser.add_argument("--optimizer", default=defaults.optimizer, help=f"{_choices(OPTIMIZERS)} (default: %(default)s)")
  parser.add_argument(
    "--learning-rate", type=float, default=defaults.learning_rate, help=f"default: {defaults.learning_rate}"
  )
  parser.add_argument(
    "--weight-decay", type=float, default=defaults.weight_decay, help=f"default: {defaults.weight_decay}"
  )
  parser.add_argument(
    "--schedule",
    default=defaults.schedule,
    help=f"learning-rate schedule: {_choices(SCHEDULES)} (default: %(default)s)",
  )
  parser.add_argument(
    "--bucket-by-length",
    action=argparse.BooleanOptionalAction,
    default=defaults.bucket_by_length,
    help="text: group batches by length and trim their padding (default: on)",
  )
  parser.add_argument(
    "--warmup",
    type=float,
    default=defaults.warmup,
    help="fraction of the steps over which the learning rate rises from 0 (default: %(default)s; BERT: 0.1)",
  )
  parser.add_argument(
    "--seeds",
    default=str(seeds_default),
    help=f"a count N (seeds 0..N-1) or a comma list, e.g. 0,3,7 (default: {seeds_default})",
  )


def _add_remedy_options(parser: argparse.ArgumentParser) -> None:
  remedy = RemedyOptions()
  parser.add_argument(
    "--remedy", default="none", help=f"a training-time remedy for class imbalance: {_described(REMEDIES)}"
  )
  parser.add_argument(
    "--sampling-power",
    type=float,
    default=remedy.sampling_power,
    metavar="Q",
    help="oversample: class c's share of the batches goes as n_c^(1-Q): 1 balanced, 0.5 square root, 0 natural"
    " (default: %(default)s)",
  )
  parser.add_argument(
    "--beta",
    type=float,
    default=remedy.beta,
    help="reweight: Cui et al.'s effective-number beta in [0, 1), e.g. 0.999 (default: 1/n_c weights)",
  )
  parser.add_argument(
    "--tau", type=float, default=remedy.tau, help="logit_adjust and threshold: tau (default: %(default)s)"
  )
  parser.add_argument(
    "--k-neighbors", type=int, default=remedy.k_neighbors, help="smote and family: neighbours (default: %(default)s)"
  )
  parser.add_argument(
    "--remedy-seed", type=int, default=remedy.seed, help="smote and family: random state (default: %(default)s)"
  )
  parser.add_argument(
    "--smote-space",
    default=remedy.space,
    choices=("input", "features"),
    help="smote and family: on the input rows, or on the trained model's penultimate features with the head"
    " re-fitted (default: %(default)s)",
  )
  parser.add_argument(
    "--head-epochs",
    type=int,
    default=remedy.head_epochs,
    help="--smote-space features: head epochs (default: %(default)s)",
  )


def _add_output(parser: argparse.ArgumentParser, help_text: str, *, required: bool = True) -> None:
  parser.add_argument("--out", required=required, metavar="PATH", help=help_text)
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _add_progress(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


class OneLineParser(argparse.ArgumentParser):
  """argparse with its errors as one line (the usage is one `--help` away),
  no abbreviated flags (`--scor` is not silently `--score`), and the nearest
  known flag suggested for an unknown one."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("allow_abbrev", False)
    super().__init__(*args, **kwargs)

  def error(self, message):
    hint = self._nearest_flag(message)
    self.exit(2, f"pruning: error: {message}{hint} (see `{self.prog} --help`)\n")

  def _nearest_flag(self, message: str) -> str:
    if not message.startswith("unrecognized arguments:"):
      return ""
    unknown = [a.split("=", 1)[0] for a in message.split(":", 1)[1].split() if a.startswith("--")]
    known = set(self._option_string_actions)
    for action in self._actions:
      if isinstance(action, argparse._SubParsersAction):
        for command in action.choices.values():
          known |= set(command._option_string_actions)
    for flag in unknown:
      nearest = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.6)
      if nearest:
        return f"; did you mean {nearest[0]}?"
    return ""


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
  _add_progress(run)

  score = commands.add_parser(
    "score",
    help="train proxies and write a manifest of scores",
    description="Train S proxy seeds (one compiled program) and score every training example.",
  )
  _add_data_options(score, required=False)
  _add_training_options(
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
  score.add_argument(
    "--vog-checkpoints",
    type=int,
    default=None,
    metavar="K",
    help="VoG reads K evenly spaced proxy epochs of its window (default: every epoch)",
  )
  score.add_argument(
    "--vog-window",
    default="all",
    choices=("all", "early", "late"),
    help="the proxy epochs VoG reads: all, early (first half) or late (second half) (default: %(default)s)",
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
    help=f"{_described(STRATEGIES)} (default: %(default)s)",
  )
  sel.add_argument(
    "--class-rule",
    default=SelectionConfig.class_rule,
    help=f"{_described(CLASS_RULES)} (default: %(default)s)",
  )
  sel.add_argument(
    "--min-per-class", type=int, default=None, help="every class keeps at least this many examples (or all it has)"
  )
  sel.add_argument("--score", default=None, help="score column to rank by (default: the only one)")
  sel.add_argument(
    "--seed", type=int, default=SELECTION.seed, help="seed of random, ccs and probabilistic (default: %(default)s)"
  )
  sel.add_argument(
    "--beta",
    type=float,
    default=SELECTION.beta,
    help="offset and ccs: fraction of hardest examples dropped (default: %(default)s)",
  )
  sel.add_argument(
    "--num-strata", type=int, default=SELECTION.num_strata, help="ccs: equal-width score strata (default: %(default)s)"
  )
  sel.add_argument(
    "--temperature",
    type=float,
    default=SELECTION.temperature,
    help="probabilistic: softmax temperature (default: %(default)s)",
  )
  sel.add_argument(
    "--weighting",
    default=SELECTION.weighting,
    help=f"probabilistic: {_choices(WEIGHTINGS)}: softmax(difficulty / T) or linear in difficulty"
    " (default: %(default)s)",
  )
  sel.add_argument(
    "--drop-suspects",
    action="store_true",
    help="drop the examples a flagged manifest marks as likely mislabeled (pruning flag) before the rule",
  )
  _add_output(sel, "subset manifest Parquet file to write")

  flag = commands.add_parser(
    "flag",
    help="flag likely wrong labels in a manifest",
    description="Estimate how many labels of each class are wrong and flag them: is_suspect, with the given"
    " and likely label and the evidence. Retrains the manifest's proxies (K folds, or with threshold samples).",
  )
  flag.add_argument("manifest", help="manifest Parquet file (a whole scored dataset)")
  _add_data_options(flag, required=False, recorded=True)
  flag.add_argument(
    "--method",
    default=FLAG.method,
    help=f"{_described(FLAGGING_METHODS)} (default: %(default)s)",
  )
  flag.add_argument("--folds", type=int, default=FLAG.folds, help="out-of-fold probabilities (default: %(default)s)")
  flag.add_argument(
    "--percentile",
    type=float,
    default=FLAG.percentile,
    help="aum_threshold: the percentile of the threshold samples' AUM that is the cutoff (default: %(default)s)",
  )
  flag.add_argument("--score", default=None, help="ranked: the score ranking within a class (default: aum, el2n, loss)")
  flag.add_argument(
    "--per-class",
    action="store_true",
    help="aum_threshold: flag at most confident learning's estimated count in each class (long-tailed data)",
  )
  flag.add_argument("--seed", type=int, default=FLAG.seed, help="seed of the folds and threshold samples")
  flag.add_argument(
    "--split",
    default=FLAG.split,
    choices=SPLITS,
    help="train: the training split's labels; all: the test split's too, by confident learning on the out-of-fold"
    " proxies' average (test suspects go to --suspects and the provenance) (default: %(default)s)",
  )
  flag.add_argument(
    "--suspects", default=None, metavar="PATH", help="also write the suspects alone, for relabelling (.parquet or .csv)"
  )
  _add_output(flag, "flagged manifest Parquet file to write")
  _add_progress(flag)

  train = commands.add_parser(
    "train",
    help="train on all data or a subset and evaluate on the test split",
    description="Retrain a fresh model and report accuracy, balanced accuracy,"
    " per-class and worst-class recall and macro-F1 on the test split.",
  )
  _add_data_options(train, required=False, recorded=True)
  train.add_argument("--subset", default=None, help="subset manifest to train on (default: all data)")
  _add_training_options(train, seeds_default=len(RetrainConfig.seeds), epochs_default=TrainConfig.epochs)
  train.add_argument(
    "--budget",
    default=RetrainConfig.budget,
    help=f"{_choices(BUDGETS)}. steps: as many steps as --epochs on the full data (Data Diet); epochs: --epochs"
    " of the subset (default: %(default)s)",
  )
  _add_remedy_options(train)
  train.add_argument(
    "--figures",
    default=None,
    metavar="DIR",
    help="write roc.png, pr.png (one-vs-rest, with each class's prevalence) and confusion.png into DIR",
  )
  _add_output(train, "JSON file for the metrics (optional)", required=False)
  _add_progress(train)

  export = commands.add_parser(
    "export",
    help="export a subset's examples",
    description="Write the kept examples as an id list, a Parquet table, an .npz,"
    " a TFDS dataset (OUT/NAME/VERSION) or an image folder (OUT/SPLIT/CLASS/ID.png).",
  )
  export.add_argument("subset", help="subset manifest Parquet file")
  _add_data_options(export, required=False, recorded=True)
  export.add_argument("--format", default="npz", help=f"{_choices(EXPORT_FORMATS)} (default: %(default)s)")
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

  report = commands.add_parser(
    "report",
    help="seed stability and correlations of a manifest's scores",
    description="Per score: Spearman correlation between seeds and overlap of the"
    " kept sets between seeds at 30/50/70% kept; correlations between scores"
    " (and with the input norm when --data is given).",
  )
  report.add_argument("manifest", help="manifest Parquet file")
  _add_data_options(report, required=False, recorded=True)

  merge = commands.add_parser(
    "merge",
    help="join the part files of a sharded scoring job into a manifest",
    description="Check that the parts come from one job and cover every example exactly once, then write the manifest.",
  )
  merge.add_argument("parts", nargs="+", help="part files written by `pruning score --shard I/N`")
  _add_output(merge, "manifest Parquet file to write")

  check = commands.add_parser(
    "check",
    help="validate a manifest or a run folder (exit 1 if anything is wrong)",
    description="Validate a manifest, a subset or a run folder and list every problem:"
    " exit status 0 when sound, 1 when problems were found, 2 on bad input.",
  )
  check.add_argument("path", help="manifest Parquet file or run folder")
  _add_data_options(check, required=False, recorded=True)

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
