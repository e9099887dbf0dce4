"""The flags several `pruning` commands share (data, training, remedies,
output, progress) and the parser class every command uses.

Defaults come from the config dataclasses (`pruning.config`,
`pruning.training.TrainConfig`) and the choices from the registries, so
nothing is written twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re

from pruning.config import DataConfig
from pruning.data import DATA_SOURCES
from pruning.flagging import FlagOptions
from pruning.models import MODELS
from pruning.retraining import REMEDIES, RemedyOptions
from pruning.runtime.fields import choices_text, described, flag_of
from pruning.selection import SelectionRule
from pruning.training import TrainConfig

DATA_HELP = "dataset spec: " + ", ".join(DATA_SOURCES.usages())
DATA = DataConfig(spec="")
SELECTION = SelectionRule()
FLAG = FlagOptions()
PIPELINE_MODEL = "mlp"


def add_fields(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
  """A flag for each field of config dataclass `cls` declared with `pruning.runtime.fields.option`,
  in field order: its default, type (from the annotation), choices, metavar and help."""
  for field in dataclasses.fields(cls):
    if "help" not in field.metadata or field.name in skip:
      continue
    meta = field.metadata
    kind = str(field.type)
    help_text = meta["help"]() if callable(meta["help"]) else meta["help"]
    kwargs: dict = {"default": field.default, "help": help_text}
    if kind == "bool":
      kwargs["action"] = argparse.BooleanOptionalAction if field.default else "store_true"
    else:
      kwargs["type"] = float if kind.startswith("float") else int if kind.startswith("int") else str
      for key in ("metavar", "choices"):
        if meta.get(key) is not None:
          kwargs[key] = meta[key]
    parser.add_argument(flag_of(field), **kwargs)


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
  add_fields(parser, DataConfig)
  if recorded:
    for action in parser._actions:
      if action not in actions and action.dest != "data":
        action.default = None
        # "%(default)s" holds a parenthesis of its own
        action.help = re.sub(
          r"\(default: (%\(default\)s|[^)]*)\)", "(default: as the manifest records)", action.help or ""
        )


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
  add_fields(parser, TrainConfig)
  parser.add_argument(
    "--seeds",
    default=str(seeds_default),
    help=f"a count N (seeds 0..N-1) or a comma list, e.g. 0,3,7 (default: {seeds_default})",
  )


def add_remedy_options(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--remedy", default="none", help=f"a training-time remedy for class imbalance: {described(REMEDIES)}"
  )
  add_fields(parser, RemedyOptions)


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
