"""What the command line's flags mean as library objects: the data, training
and scoring configs they describe, and the data a manifest records."""

from __future__ import annotations

import dataclasses
import sys

from pruning.config import DataConfig, PipelineConfig, parse_config, parse_model_options
from pruning.data import load_dataset, load_dataset_for, recorded_data_options
from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.retraining import RemedyOptions
from pruning.runtime.fields import dest_of, flag_of
from pruning.runtime.validation import parse_seeds
from pruning.training import TrainConfig

DEFAULT_DATA = DataConfig()
# The flag of each option, for messages (`--data digits --holdout 0.2`).
DATA_FLAG_NAMES = {f.name: flag_of(f) for f in dataclasses.fields(DataConfig)}
REMEDY_FLAGS = {f.name: flag_of(f) for f in dataclasses.fields(RemedyOptions)}


def flags(args, cls, **renamed) -> dict:
  """The flags given for `cls`'s fields (each where its flag stores it, or `renamed`)."""
  dests = {f.name: renamed.get(f.name, dest_of(f)) for f in dataclasses.fields(cls)}
  return {name: getattr(args, dest) for name, dest in dests.items() if hasattr(args, dest)}


def given_data_options(args) -> dict:
  """The data flags given on the command line, as `load_dataset` options (unset flags are None)."""
  return {k: v for k, v in flags(args, DataConfig).items() if v is not None}


def data_config(args) -> DataConfig:
  given = given_data_options(args)
  if "spec" not in given:
    raise UserError(f"pruning {args.command} needs --data SPEC")
  config = DataConfig(**given)
  if getattr(args, "model", None) is not None:  # a pretrained model reads its checkpoint's tokenizer
    config = config.for_model(args.model, parse_model_options(getattr(args, "model_option", [])))
  return config


def load_data(args):
  return load_dataset(**data_config(args).options())


def load_data_for(args, manifest: Manifest, *, what: str = "manifest"):
  """The data a manifest or subset was made from: every data option as the
  manifest records it (its tokenizer too), a flag given overriding; checked
  against the manifest's fingerprint."""
  given = given_data_options(args)
  dataset, taken = load_dataset_for(manifest.provenance, **given)
  shown = {k: taken[k] for k in DATA_FLAG_NAMES if k in taken and taken[k] != getattr(DEFAULT_DATA, k, None)}
  if shown:
    described = " ".join(f"{DATA_FLAG_NAMES[k]} {v}" for k, v in shown.items())
    print(f"data as the {what} records: {described}", file=sys.stderr)
  if dataset.fingerprint != manifest.fingerprint:
    recorded = recorded_data_options(manifest.provenance)
    changed = [k for k in DATA_FLAG_NAMES if k in given and k in recorded and given[k] != recorded[k]]
    if changed:
      described = ", ".join(f"{DATA_FLAG_NAMES[k]} {given[k]} (recorded: {recorded[k]})" for k in changed)
      raise UserError(
        f"the data loaded with {described} has fingerprint {dataset.fingerprint[:12]}, not the {what}'s"
        f" {manifest.fingerprint[:12]}: drop {'that flag' if len(changed) == 1 else 'those flags'} to load"
        " the data as recorded"
      )
  manifest.check_dataset(dataset)
  return dataset


def train_config(args) -> TrainConfig:
  return TrainConfig(**flags(args, TrainConfig))


def score_config(args) -> PipelineConfig:
  """The scoring job the flags describe, as a pipeline config (what the manifest records)."""
  return parse_config(
    {
      "name": "score",
      "dataset": dataclasses.asdict(data_config(args)),
      "model": args.model,
      "model_options": parse_model_options(args.model_option),
      "training": dataclasses.asdict(train_config(args)),
      "proxy": {
        "seeds": list(parse_seeds(args.seeds, where="--seeds")),
        "epochs": args.epochs,
        "vog_checkpoints": args.vog_checkpoints,
        "vog_window": args.vog_window,
        "dynamics_window": args.dynamics_window,
        "prototypes": args.prototypes,
        "duplicate_similarity": args.duplicate_similarity,
        "tracin_checkpoints": args.tracin_checkpoints,
        "keep_checkpoints": args.keep_checkpoints,
      },
      "scores": args.score,
      "plugins": list(args.plugin),
    },
    source="the command line",
  )
