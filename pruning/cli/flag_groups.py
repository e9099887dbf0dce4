"""The flags several `pruning` commands share (data, training, remedies,
output, progress) and the parser class every command uses.

Defaults come from the config dataclasses (`pruning.config`,
`pruning.training.TrainConfig`) and the choices from the registries, so
nothing is written twice.
"""

from __future__ import annotations

import argparse
import difflib
import re

from pruning.config import DataConfig
from pruning.data import DATA_SOURCES
from pruning.data.csv import CATEGORICAL
from pruning.data.normalization import MODES as NORMALIZE_MODES
from pruning.data.transforms import NOISE_KINDS
from pruning.flagging import FlagOptions
from pruning.models import MODELS
from pruning.retraining import REMEDIES, RemedyOptions
from pruning.selection import SelectionRule
from pruning.training import OPTIMIZERS, SCHEDULES, TrainConfig

DATA_HELP = "dataset spec: " + ", ".join(DATA_SOURCES.usages())
DATA = DataConfig(spec="")
SELECTION = SelectionRule()
FLAG = FlagOptions()
PIPELINE_MODEL = "mlp"


def choices_text(names) -> str:
  names = list(names)
  return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def described(registry) -> str:
  return "; ".join(f"{name}: {text}" for name, text in registry.descriptions().items())


def add_data_options(parser: argparse.ArgumentParser, *, required: bool = True, recorded: bool = False) -> None:
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


def add_training_options(parser: argparse.ArgumentParser, *, seeds_default: int, epochs_default: int) -> None:
  parser.add_argument("--model", default=PIPELINE_MODEL, help=f"{choices_text(MODELS)} (default: %(default)s)")
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
  parser.add_argument(
    "--optimizer", default=defaults.optimizer, help=f"{choices_text(OPTIMIZERS)} (default: %(default)s)"
  )
  parser.add_argument(
    "--learning-rate", type=float, default=defaults.learning_rate, help=f"default: {defaults.learning_rate}"
  )
  parser.add_argument(
    "--weight-decay", type=float, default=defaults.weight_decay, help=f"default: {defaults.weight_decay}"
  )
  parser.add_argument(
    "--schedule",
    default=defaults.schedule,
    help=f"learning-rate schedule: {choices_text(SCHEDULES)} (default: %(default)s)",
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


def add_remedy_options(parser: argparse.ArgumentParser) -> None:
  remedy = RemedyOptions()
  parser.add_argument(
    "--remedy", default="none", help=f"a training-time remedy for class imbalance: {described(REMEDIES)}"
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


def add_output(parser: argparse.ArgumentParser, help_text: str, *, required: bool = True) -> None:
  parser.add_argument("--out", required=required, metavar="PATH", help=help_text)
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def add_progress(parser: argparse.ArgumentParser) -> None:
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
