"""Planning a training run before anything is allocated: steps, memory, and one line saying what will run."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

from pruning.errors import UserError
from pruning.models import create_model
from pruning.runtime.progress import progress_enabled
from pruning.runtime.validation import check_fits, format_bytes

# Steps are counted in int32 on the device.
MAX_STEPS = 2**31 - 1


def parameter_count(model: str, model_options: dict, *, input_shape, num_classes: int) -> int:
  """The model's number of parameters, from shapes alone (nothing allocated);
  see `abstract_model`."""
  abstract = abstract_model(model, model_options, input_shape=input_shape, num_classes=num_classes)
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def attention_bytes(abstract, input_shape) -> int:
  """The attention memory of one example through an encoder's backward pass:
  every layer keeps its (heads, L, L) logits and probabilities for the
  gradient, which another pair of the same size flows back through. The least
  any batch or micro-batch needs (0 for a model without attention layers)."""
  layers = getattr(abstract, "layers", None)
  if layers is None or not len(layers) or not hasattr(layers[0], "heads"):
    return 0
  length = int(input_shape[-1])
  return 4 * 4 * int(layers[0].heads) * length * length * len(layers)


def abstract_model(model: str, model_options: dict, *, input_shape, num_classes: int):
  """The model built from shapes alone (nothing allocated).

  Refuses a model that normalises with batch statistics (BatchNorm in training mode):
  one example's output would depend on the others in its batch, so
  per-example scores are not defined, and training it in one compiled
  program over seeds fails deep inside Flax."""
  abstract = nnx.eval_shape(
    lambda: create_model(model, input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(0), **model_options)
  )
  training_mode = [
    path
    for path, module in nnx.iter_modules(abstract)
    if isinstance(module, nnx.BatchNorm) and not module.use_running_average
  ]
  if training_mode:
    raise UserError(
      f"model {model!r} normalises with batch statistics (BatchNorm in training mode): per-example"
      " scores need each example's output to be independent of its batch; use nnx.GroupNorm or"
      " nnx.LayerNorm (as resnet18 does), or BatchNorm(use_running_average=True)"
    )
  return abstract


def plan_training(
  model: str,
  model_options: dict,
  *,
  input_shape,
  num_classes: int,
  seeds,
  n: int,
  num_steps: int,
  per_epoch: int,
  kept_states: int,
  dynamics_window: int | None,
  desc: str,
  progress: bool,
) -> None:
  """Refuses training that cannot fit before anything is allocated, and says
  what will run (examples, seeds, steps) in one line on stderr."""

  if num_steps > MAX_STEPS:
    raise UserError(f"{desc}: {num_steps} steps is more than the {MAX_STEPS} a job can count: train fewer epochs")
  abstract = abstract_model(model, model_options, input_shape=input_shape, num_classes=num_classes)
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
  # Per seed: parameters, gradients and two optimiser moments in float32, the
  # states kept for NAME@E scores, and as much again for XLA's temporaries.
  state_bytes = 4 * count * len(seeds) * (4 + kept_states) * 2
  dynamics_bytes = 0 if dynamics_window is None else 4 * len(seeds) * n * (dynamics_window + 8)
  check_fits(
    state_bytes + dynamics_bytes,
    what=f"{desc} ({len(seeds)} seeds of a {model} with {count:,} parameters)",
    fix="use fewer seeds or a smaller model",
  )
  attention = attention_bytes(abstract, input_shape) * len(seeds)
  if attention:  # quadratic in the length: even one example per step must fit
    check_fits(
      state_bytes + dynamics_bytes + attention,
      what=f"{desc} (attention over {int(input_shape[-1])} tokens, one example per step, {len(seeds)} seeds)",
      fix="lower --max-length (dataset.max_length in YAML)",
    )
  if progress and progress_enabled():
    import sys

    print(
      f"{desc}: {n} examples x {len(seeds)} seed{'s' if len(seeds) != 1 else ''}, {num_steps} steps"
      f" ({math.ceil(num_steps / per_epoch)} epochs of {per_epoch}), {model} with {count:,} parameters"
      f" (~{format_bytes(state_bytes)} of state)",
      file=sys.stderr,
    )
