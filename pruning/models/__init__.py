"""Models by name: `linear`, `mlp`, `cnn`, `resnet18`, `transformer`, `bert` (Flax NNX).

Every model is built as `Model(input_shape=..., num_classes=..., rngs=..., **options)`
and maps a batch of inputs to logits as `head(features(x))`, where `head` is
the final `nnx.Linear` (the last-layer GraNd score needs `features` and
`head`). None uses dropout or batch statistics, so evaluation and training
modes coincide and per-example scores are defined.
"""

from __future__ import annotations

import inspect
from typing import Any

from flax import nnx

from pruning.errors import UserError, unknown_name_error
from pruning.models.cnn import CNN
from pruning.models.linear import Linear
from pruning.models.mlp import MLP
from pruning.models.pooling import max_pool  # noqa: F401  (for users' own models)
from pruning.models.pretrained import Bert
from pruning.models.resnet import ResNet18
from pruning.models.transformer import Transformer
from pruning.registry import Registry

MODELS: Registry[type[nnx.Module]] = Registry("model")
MODELS.register("linear", Linear, description="logistic regression on the flattened input")
MODELS.register("mlp", MLP, description="dense layers with ReLU")
MODELS.register("cnn", CNN, description="two convolutions with max pooling, then a dense layer")
MODELS.register("resnet18", ResNet18, description="ResNet-18 with GroupNorm")
MODELS.register("transformer", Transformer, description="BERT-style encoder on token ids, trained from scratch")
MODELS.register(
  "bert", Bert, description="a pretrained BERT-family encoder from a local checkpoint folder (checkpoint=PATH)"
)

_BUILT_IN_ARGUMENTS = ("self", "input_shape", "num_classes", "rngs")


def register_model(name: str, cls: type[nnx.Module]) -> type[nnx.Module]:
  """Makes a user's NNX model available by `name` (in the API, configs and CLI runs
  in the same process). `cls(input_shape=..., num_classes=..., rngs=..., **options)`
  must build it; `__call__(x)` must return logits without batch statistics."""
  if name in MODELS:
    if MODELS[name] is not cls:
      raise UserError(f"model name {name!r} is taken: choose another name")
    return cls
  return MODELS.register(name, cls, description=(cls.__doc__ or "").strip().split("\n")[0])


def reads_token_ids(name: str) -> bool:
  """Whether model `name` takes token ids (a `Transformer`): indices to leave unstandardised, in rows
  whose padding can be trimmed."""
  cls = get_model_class(name)
  return isinstance(cls, type) and issubclass(cls, Transformer)


def model_options(name: str) -> dict[str, object]:
  """The options a model accepts, with their defaults."""
  cls = get_model_class(name)
  return {
    p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.name not in _BUILT_IN_ARGUMENTS
  }


def get_model_class(name: str) -> type[nnx.Module]:
  return MODELS.get(name)


# Widths beyond this are not a proxy model for data pruning; the memory check
# before training catches what fits this bound but not the machine.
MAX_WIDTH = 1 << 16


def validate_model_options(name: str, options: dict | None) -> dict:
  """`options` checked against the model's: known keys, and values of the
  kind its defaults have (a width is a whole number in 1..MAX_WIDTH, a list of
  widths a list of such numbers)."""
  if options is not None and not isinstance(options, dict):
    raise UserError(f"model_options must be a mapping such as {{hidden: [256, 256]}}, got {options!r}")
  options = dict(options or {})
  valid = model_options(name)
  limits = getattr(get_model_class(name), "OPTION_LIMITS", {})
  checks = getattr(get_model_class(name), "OPTION_CHECKS", {})  # options of their own kind (a count or "all")
  for key, value in options.items():
    if key not in valid:
      raise unknown_name_error(f"option of model {name!r}", str(key), valid)
    if key in checks:
      checks[key](value)
      continue
    if key in limits:
      low, high = limits[key]
      if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"model {name!r} option {key} must be a whole number in {low}..{high}, got {value!r}")
      continue
    _check_option(name, key, value, valid[key])
  return options


def with_data_options(name: str, options: dict | None, dataset) -> dict:
  """`options` plus what the model must know of the data and takes as an
  option (a tokenizer's `vocab_size` and `pad_id`), unless given."""
  options = dict(options or {})
  valid = model_options(name)
  for key, value in dataset.model_options().items():
    if key in valid and key not in options:
      options[key] = value
    elif key == "pad_id" and key in options and options[key] != value:
      raise UserError(
        f"model option pad_id {options[key]!r} contradicts the tokenizer's padding id {value}: drop the option"
      )
    elif key == "vocab_size" and key in options and isinstance(options[key], int) and options[key] < value:
      raise UserError(
        f"model option vocab_size {options[key]} is below the tokenizer's {value} tokens (ids would fall outside"
        " the embeddings): drop the option"
      )
  return validate_model_options(name, options)


def _is_width(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WIDTH


def _check_option(model: str, key: str, value, default) -> None:
  where = f"model {model!r} option {key}"
  if isinstance(default, (tuple, list)) and all(_is_width(v) for v in default):
    if not isinstance(value, (tuple, list)) or not all(_is_width(v) for v in value):
      raise UserError(f"{where} must be a list of whole numbers in 1..{MAX_WIDTH}, e.g. {list(default)}; got {value!r}")
  elif isinstance(default, bool):
    if not isinstance(value, bool):
      raise UserError(f"{where} must be true or false, got {value!r}")
  elif isinstance(default, int):
    if not _is_width(value):
      raise UserError(f"{where} must be a whole number in 1..{MAX_WIDTH}, got {value!r}")
  elif isinstance(default, float):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
      raise UserError(f"{where} must be a number, got {value!r}")
  elif isinstance(default, str) and not isinstance(value, str):
    raise UserError(f"{where} must be a string, got {value!r}")


def create_model(
  name: str,
  *,
  input_shape: tuple[int, ...],
  num_classes: int,
  rngs: nnx.Rngs,
  **options,
) -> nnx.Module:
  """Builds model `name` with keyword `options` (see `model_options(name)`)."""
  options = validate_model_options(name, options)
  try:
    model_class: Any = get_model_class(name)  # each model takes these keywords (register_model's contract)
    return model_class(input_shape=tuple(input_shape), num_classes=num_classes, rngs=rngs, **options)
  except TypeError as error:
    raise UserError(f"model {name!r}: bad options {options}: {error}") from None


__all__ = [
  "MODELS",
  "Bert",
  "Transformer",
  "create_model",
  "model_options",
  "reads_token_ids",
  "register_model",
  "validate_model_options",
  "with_data_options",
]
