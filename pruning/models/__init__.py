"""Models by name: `linear`, `mlp`, `cnn`, `resnet18` (Flax NNX).

Every model is built as `Model(input_shape=..., num_classes=..., rngs=..., **options)`
and maps a batch of inputs to logits as `head(features(x))`, where `head` is
the final `nnx.Linear` (the last-layer GraNd score needs `features` and
`head`). None uses dropout or batch statistics, so evaluation and training
modes coincide and per-example scores are defined.
"""

from __future__ import annotations

import inspect

from flax import nnx

from pruning.errors import UserError, unknown_name_error
from pruning.models.cnn import CNN
from pruning.models.linear import Linear
from pruning.models.mlp import MLP
from pruning.models.pooling import max_pool  # noqa: F401  (for users' own models)
from pruning.models.resnet import ResNet18

MODELS: dict[str, type[nnx.Module]] = {
    "linear": Linear,
    "mlp": MLP,
    "cnn": CNN,
    "resnet18": ResNet18,
}

_BUILT_IN_ARGUMENTS = ("self", "input_shape", "num_classes", "rngs")


def register_model(name: str, cls: type[nnx.Module]) -> type[nnx.Module]:
  """Makes a user's NNX model available by `name` (in the API, configs and CLI runs
  in the same process). `cls(input_shape=..., num_classes=..., rngs=..., **options)`
  must build it; `__call__(x)` must return logits without batch statistics."""
  if name in MODELS and MODELS[name] is not cls:
    raise UserError(f"model name {name!r} is taken: choose another name")
  MODELS[name] = cls
  return cls


def model_options(name: str) -> dict[str, object]:
  """The options a model accepts, with their defaults."""
  cls = get_model_class(name)
  return {
      p.name: p.default
      for p in inspect.signature(cls.__init__).parameters.values()
      if p.name not in _BUILT_IN_ARGUMENTS
  }


def get_model_class(name: str) -> type[nnx.Module]:
  if name not in MODELS:
    raise unknown_name_error("model", name, MODELS)
  return MODELS[name]


def validate_model_options(name: str, options: dict | None) -> dict:
  options = dict(options or {})
  valid = model_options(name)
  for key in options:
    if key not in valid:
      raise unknown_name_error(f"option of model {name!r}", key, valid)
  return options


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
    return get_model_class(name)(
        input_shape=tuple(input_shape), num_classes=num_classes, rngs=rngs, **options
    )
  except TypeError as error:
    raise UserError(f"model {name!r}: bad options {options}: {error}") from None


__all__ = ["MODELS", "create_model", "model_options", "register_model", "validate_model_options"]
