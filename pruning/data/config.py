"""How to load a dataset (`DataConfig`): the one place each data option, its
default and its check are written. `load_dataset`, the `dataset` section of a
pipeline config and the data flags of every command all derive from it."""

from __future__ import annotations

import dataclasses

from pruning.data.csv import CATEGORICAL
from pruning.data.normalization import MODES as NORMALIZE_MODES
from pruning.data.tokenizer import TokenizerOptions
from pruning.data.transforms import NOISE_KINDS
from pruning.errors import unknown_name_error
from pruning.runtime.fields import option
from pruning.runtime.validation import check_fields, check_seed


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
  """How to load a dataset: the `dataset` section of a pipeline config, the
  data flags of every command and the options of `load_dataset`, in one place.

  spec: `digits` (the embedded default), `mnist1d`, `npz:PATH`,
    `parquet:PATH`, `csv:PATH` or `tfds:NAME[/CONFIG][:VERSION]:SPLIT`,
    or a source a user registered (`pruning.data.register_source`).
  label_column: the label column of a Parquet or CSV table.
  data_dir: where TFDS looks for prepared datasets.
  test_split: the TFDS split used as the test split.
  holdout: for data without a test split, the fraction of the training
    split to hold out as one (seeded and stratified; see `hold_out`).
  validation: a fraction of the training split held out as a validation
    split (what the `drop` class rule measures class errors on).
  long_tail: an imbalance ratio r: subsample the training split to an
    exponential class profile (see `pruning.data.transforms`).
  label_noise: a rate eta of label noise in the training split.
  label_noise_kind: `symmetric` (to a uniformly drawn other class) or
    `pairs` (class c to c + 1, class-dependent).
  seed: the seed of the holdouts and transforms.
  stream: read Parquet and TFDS training features a row group or chunk at
    a time into a memory-mapped spill file rather than into memory (an
    uncompressed `.npz` is always mapped); see `pruning.data.streaming`.
  normalize: how training standardises the inputs: `auto` (per feature for
    tables (N, D), per channel otherwise), `per_feature`, `per_channel`,
    `global` or `none` (see `pruning.data.normalization`).
  categorical: text feature columns of a table are refused (`refuse`) or
    one-hot encoded (`onehot`).
  text_column, text_pair_column: the text column(s) of text data (a table
    or TFDS dataset); a table with a `text` column is text data.
  tokenizer: for text data, `wordpiece` or `bpe` (trained on the training
    split with `vocab_size` entries) or a checkpoint folder's tokenizer;
    `max_length` tokens per example, `lowercase` first (see
    `pruning.data.text`).
  """

  spec: str = dataclasses.field(default="digits", metadata={"flag": "--data"})  # its help lists the sources
  label_column: str = option("label", help="label column of a table (default: %(default)s)")
  data_dir: str | None = option(None, help="where TFDS finds prepared datasets")
  test_split: str | None = option("test", help="TFDS split used for testing (default: %(default)s)")
  holdout: float | None = option(
    None,
    metavar="FRACTION",
    help="for data without a test split: hold out this fraction of the training split (seeded, stratified), e.g. 0.2",
  )
  validation: float | None = option(
    None,
    metavar="FRACTION",
    help="hold out this fraction of the training split as a validation split"
    " (what --class-rule drop measures class errors on)",
  )
  long_tail: float | None = option(
    None,
    metavar="RATIO",
    help="study transform: subsample training classes to an exponential profile with this imbalance ratio, e.g. 100",
  )
  label_noise: float | None = option(
    None, metavar="RATE", help="study transform: flip this fraction of training labels to another class"
  )
  label_noise_kind: str = option(
    "symmetric",
    choices=NOISE_KINDS,
    help="symmetric: to a uniformly drawn other class; pairs: class c to c + 1 (default: %(default)s)",
  )
  seed: int = option(0, flag="--data-seed", help="seed of holdouts and transforms (default: %(default)s)")
  stream: bool = option(
    False,
    help="read Parquet/TFDS training features a row group at a time into a memory-mapped"
    " file instead of into memory (an uncompressed .npz is always mapped)",
  )
  normalize: str = option(
    "auto",
    choices=NORMALIZE_MODES,
    help="input standardisation for training: auto (per feature for tables, per channel for"
    " images), per_feature, per_channel, global or none (default: %(default)s)",
  )
  categorical: str = option(
    "refuse",
    choices=CATEGORICAL,
    help="text feature columns of a CSV or Parquet table: refuse them, or one-hot encode them (default: %(default)s)",
  )
  # Text data (`pruning.data.text`): the text column(s) and how they become token ids.
  text_column: str | None = option(
    None, help="text data: the column (or TFDS feature) of text (default: 'text' when the table has one)"
  )
  text_pair_column: str | None = option(None, help="text data: a second text column, for sentence pairs")
  tokenizer: str = option(
    "wordpiece",
    help="text data: wordpiece or bpe (trained on the training split), or a checkpoint folder with"
    " tokenizer.json or vocab.txt (default: %(default)s)",
  )
  vocab_size: int = option(8192, help="a trained tokenizer's vocabulary (default: %(default)s)")
  max_length: int = option(
    128,
    help="text data: tokens per example, special tokens included; longer text is truncated (default: %(default)s)",
  )
  lowercase: bool = True

  def __post_init__(self):
    check_fields(self, "dataset")
    self.tokenizer_options()
    if self.normalize not in NORMALIZE_MODES:
      raise unknown_name_error("dataset normalize", self.normalize, NORMALIZE_MODES)
    check_seed(self.seed, "dataset")
    if self.label_noise_kind not in NOISE_KINDS:
      raise unknown_name_error("dataset label_noise_kind", self.label_noise_kind, NOISE_KINDS)

  def tokenizer_options(self) -> TokenizerOptions:
    """How text becomes token ids (checked when built)."""
    return TokenizerOptions(
      tokenizer=self.tokenizer, vocab_size=self.vocab_size, max_length=self.max_length, lowercase=self.lowercase
    )

  def options(self) -> dict:
    """The keyword arguments of `pruning.data.load_dataset`."""
    return dataclasses.asdict(self)

  def for_model(self, model: str, model_options: dict) -> DataConfig:
    """A pretrained model's data reads its checkpoint's tokenizer unless another is named."""
    checkpoint = (model_options or {}).get("checkpoint")
    if model == "bert" and checkpoint and self.tokenizer == "wordpiece":
      return dataclasses.replace(self, tokenizer=str(checkpoint))
    return self
