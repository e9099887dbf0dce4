"""Datasets by spec string: `digits`, `mnist1d`, `npz:PATH`, `parquet:PATH`, `tfds:NAME[/CONFIG][:VERSION]:SPLIT`."""

from __future__ import annotations

import dataclasses

from pruning.data import transforms
from pruning.data.config import DataConfig
from pruning.data.csv import load_csv
from pruning.data.dataset import Dataset, Split, hold_out, make_dataset, make_split

# Each source module registers its source in DATA_SOURCES when imported.
from pruning.data.digits import load_digits
from pruning.data.mnist1d import load_mnist1d
from pruning.data.normalization import Normalizer
from pruning.data.npz import load_npz
from pruning.data.parquet import load_parquet
from pruning.data.sources import DATA_SOURCES, DataSource, load_source, register_source
from pruning.data.synthetic_text import load_synthtext
from pruning.data.tabular import load_tabular
from pruning.data.text import is_raw_text, tokenize_dataset
from pruning.data.tfds import load_tfds
from pruning.data.tokenizer import TokenizerOptions
from pruning.errors import UserError
from pruning.runtime.validation import from_keywords

SOURCES = tuple(DATA_SOURCES.usages())


def load_dataset(spec: str, *, tokenizer_json: str | None = None, **options) -> Dataset:
  """Loads a dataset from its spec string: `load_dataset("digits", label_noise=0.2)`.

  `options` are the fields of `pruning.data.DataConfig` (each documented
  there): `label_column`, `holdout`, `validation`, `long_tail`,
  `label_noise`, `normalize`, `text_column`, `tokenizer`, `max_length`, ...
  `tokenizer_json`: text data: a serialized tokenizer (as a manifest records
  it, or a run's `tokenizer.json`) used as it is instead of `tokenizer`.

  Holdouts come first, so test and validation splits stay balanced and clean;
  text is tokenised last, with a tokenizer trained on the final training split.
  """
  config = from_keywords(DataConfig, options, what="data option", spec=spec)
  dataset = load_source(
    spec,
    label_column=config.label_column,
    data_dir=config.data_dir,
    test_split=config.test_split,
    stream=config.stream,
    categorical=config.categorical,
    text_column=config.text_column,
    text_pair_column=config.text_pair_column,
  )
  if config.text_column is not None and not dataset.is_text:
    raise UserError(f"{spec}: --text-column {config.text_column!r} given, but this source has no text: drop it")
  seed = config.seed
  if config.holdout is not None:
    dataset = hold_out(dataset, config.holdout, seed=seed)
  if config.validation is not None:
    dataset = hold_out(dataset, config.validation, seed=seed, into="validation")
  if config.long_tail is not None:
    dataset = transforms.long_tail(dataset, ratio=config.long_tail, seed=seed)
  if config.label_noise is not None:
    dataset = transforms.label_noise(dataset, rate=config.label_noise, seed=seed, kind=config.label_noise_kind)
  normalize = config.normalize
  if is_raw_text(dataset):
    if normalize not in ("auto", "none"):
      raise UserError(f"{spec}: token ids are never standardised: drop normalize {normalize!r} for text data")
    return tokenize_dataset(dataset, config.tokenizer_options(), tokenizer_json=tokenizer_json)
  if normalize != "auto":
    dataset = dataclasses.replace(dataset, normalize=normalize)
  return dataset


TRANSFORM_OPTIONS = {
  "hold_out_test": ("holdout", "fraction"),
  "hold_out_validation": ("validation", "fraction"),
  "long_tail": ("long_tail", "ratio"),
  "label_noise": ("label_noise", "rate"),
}
FLAGS = {
  "holdout": "--holdout",
  "validation": "--validation",
  "long_tail": "--long-tail",
  "label_noise": "--label-noise",
  "label_noise_kind": "--label-noise-kind",
  "seed": "--data-seed",
}


TOKENIZER_OPTIONS = ("vocab_size", "max_length", "lowercase")


def recorded_transforms(provenance: dict) -> dict:
  """The `load_dataset` options (holdout, validation, long_tail, label_noise,
  seed; for text the columns and tokenizer) that reproduce the transforms a
  manifest's provenance records."""
  options = {}
  dataset = provenance.get("dataset") or {}
  record = dataset.get("tokenizer")
  if isinstance(record, dict):
    columns = dataset.get("text_columns") or []
    options["text_column"] = columns[0] if columns else None
    options["text_pair_column"] = columns[1] if len(columns) > 1 else None
    options["tokenizer"] = record.get("tokenizer", "wordpiece")
    options.update({k: record[k] for k in TOKENIZER_OPTIONS if record.get(k) is not None})
    if record.get("requested_vocab_size") is not None:  # the trained vocabulary may be smaller than asked
      options["vocab_size"] = record["requested_vocab_size"]
  for record in (provenance.get("dataset") or {}).get("transforms") or []:
    if not isinstance(record, dict) or record.get("transform") not in TRANSFORM_OPTIONS:
      continue
    option, key = TRANSFORM_OPTIONS[record["transform"]]
    options[option] = record.get(key)
    if "seed" in record:
      options["seed"] = record["seed"]
    if record["transform"] == "label_noise" and "kind" in record:
      options["label_noise_kind"] = record["kind"]
  return options


def describe_options(options: dict) -> str:
  """`--holdout 0.2 --data-seed 1`: the command-line flags for `options`."""
  return " ".join(f"{FLAGS[k]} {v}" for k, v in options.items() if k in FLAGS and v is not None)


TOKENIZER_CHOICES = ("tokenizer", "vocab_size", "lowercase")


def recorded_data_options(provenance: dict) -> dict:
  """The `load_dataset` options a manifest's data was loaded with: the
  recorded config's `dataset` section when there is one (every option), else
  the spec and the transforms and text settings its dataset record names."""
  config = provenance.get("config")
  recorded = config.get("dataset") if isinstance(config, dict) else None
  options = dict(recorded) if isinstance(recorded, dict) else {}
  if not options:
    options = {"spec": (provenance.get("dataset") or {}).get("spec"), **recorded_transforms(provenance)}
  return {k: v for k, v in options.items() if v is not None}


def load_dataset_for(provenance: dict, **given) -> tuple[Dataset, dict]:
  """The data a manifest or subset was made from, without repeating how it was
  loaded: every `load_dataset` option comes from the manifest's record
  (`recorded_data_options`), and text is tokenised by the tokenizer the
  manifest stores, so any process gets the same token ids. An option in
  `given` (not None) overrides the record; the caller checks the result
  against the manifest's fingerprint (`Manifest.check_dataset`).

  Returns the dataset and the options taken from the record.
  """
  given = {k: v for k, v in given.items() if v is not None}
  taken = {k: v for k, v in recorded_data_options(provenance).items() if k not in given}
  options = {**taken, **given}
  if not options.get("spec"):
    raise UserError("the manifest records no dataset spec: give --data SPEC")
  tokenizer_json = provenance.get("tokenizer_json")
  if isinstance(tokenizer_json, str) and not any(k in given for k in TOKENIZER_CHOICES):
    options["tokenizer_json"] = tokenizer_json
  return load_dataset(**options), taken


__all__ = [
  "DataConfig",
  "TokenizerOptions",
  "load_synthtext",
  "load_tabular",
  "tokenize_dataset",
  "load_csv",
  "load_digits",
  "load_mnist1d",
  "load_npz",
  "load_parquet",
  "load_source",
  "load_tfds",
  "DATA_SOURCES",
  "DataSource",
  "Dataset",
  "register_source",
  "Normalizer",
  "SOURCES",
  "Split",
  "hold_out",
  "load_dataset",
  "load_dataset_for",
  "recorded_data_options",
  "recorded_transforms",
  "make_dataset",
  "make_split",
]
