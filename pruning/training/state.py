"""Trained models: S seeds of one architecture stacked on a leading axis, and inference with them."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pruning.data.normalization import Normalizer
from pruning.data.streaming import release, take_rows
from pruning.data.tokenizer import sequence_lengths
from pruning.errors import UserError
from pruning.models import create_model, reads_token_ids, validate_model_options
from pruning.runtime.progress import progress_bar
from pruning.runtime.xla import UNOPTIMISED
from pruning.training import buckets
from pruning.training import mesh as sharding
from pruning.training.frozen import FrozenInputs

EVAL_BATCH = 1024


@dataclasses.dataclass
class TrainedModels:
  """S trained models of one architecture, stacked over seeds.

  `checkpoints` maps an epoch (0 is the initialisation) to the stacked state
  at the end of that epoch; `state` is the state after the last step.
  """

  model: str
  model_options: dict
  input_shape: tuple[int, ...]
  num_classes: int
  seeds: tuple[int, ...]
  normalizer: Normalizer | FrozenInputs
  graphdef: nnx.GraphDef
  state: tuple
  checkpoints: dict[int, tuple]
  num_steps: int
  loss_history: list[list[float]]
  dynamics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  extras: dict[str, Any] = dataclasses.field(default_factory=dict)

  def state_at(self, epoch: int | None = None) -> tuple:
    if epoch is None:
      return self.state
    if epoch not in self.checkpoints:
      raise UserError(f"no checkpoint at epoch {epoch} (kept: {sorted(self.checkpoints)}): ask for it when training")
    return self.checkpoints[epoch]

  def placed_state(self, epoch: int | None = None) -> tuple:
    """(params, rest, mesh): the state at `epoch` split over the local devices'
    `seeds` axis (see `pruning.training.mesh`); mesh is None with one device."""
    mesh = sharding.device_mesh(len(self.seeds))
    params, rest = sharding.place_seeds(self.state_at(epoch), mesh)
    return params, rest, mesh

  def logits(
    self,
    x: np.ndarray,
    *,
    epoch: int | None = None,
    batch_size: int = EVAL_BATCH,
    rows_hint: int | None = None,
    progress: bool = False,
  ) -> np.ndarray:
    """Logits of every seed on raw inputs `x`: an (S, N, C) float32 array.

    Batches are sized for `rows_hint` rows (default: N), so a block or shard
    of a split runs the shapes the whole split runs (the same bits)."""
    params, rest, mesh = self.placed_state(epoch)
    forward = _forward_fn(self.graphdef, sharding.seed_map(params, "loop"))
    n = len(x)
    batch = min(batch_size, max(rows_hint or n, 1))
    rows_sharding = sharding.batch_spec(mesh, batch, per_seed=False)
    out = np.empty((len(self.seeds), n, self.num_classes), np.float32)
    chunks = list(width_batches(self.width_groups(x), batch))
    desc = "forward pass" + ("" if epoch is None else f" (epoch {epoch})")
    for rows, width in progress_bar(chunks, desc=desc, enabled=progress):
      inputs = trimmed(self.normalizer(x[rows[0] : rows[-1] + 1] if width is None else take_rows(x, rows)), width)
      release(x)
      out[:, rows] = np.asarray(forward(params, rest, sharding.place(pad_rows(inputs, batch), rows_sharding)))[
        :, : len(rows)
      ]
    return out

  def width_groups(self, x) -> list[tuple[np.ndarray, int | None]]:
    """The rows of raw inputs `x` in groups of one trimmed width, [(rows, width)].

    Token ids are grouped by the width their own length is trimmed to
    (`pruning.training.buckets`, as training trims its batches), so a
    scoring pass skips the padding and an example's values do not depend on
    which others share its batch or shard. Other inputs: one group of every
    row, untrimmed (width None)."""
    return width_groups(self.model, self.model_options, self.normalizer, x)

  def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
    """Predicted classes of every seed: an (S, N) int64 array."""
    return self.logits(x, **kwargs).argmax(-1).astype(np.int64)


def width_groups(model: str, model_options: dict, normalizer, x) -> list[tuple[np.ndarray, int | None]]:
  """`TrainedModels.width_groups` of `model` with its input transform `normalizer`."""
  every: list[tuple[np.ndarray, int | None]] = [(np.arange(len(x)), None)]
  if not reads_token_ids(model):
    return every
  if not getattr(normalizer, "trims", True) or len(x) == 0:  # pooled frozen states have no positions
    return every
  lengths = sequence_lengths(np.asarray(x), int(model_options.get("pad_id", 0)))
  trims = buckets.trim_lengths(int(x.shape[-1]))
  widths = trims[np.searchsorted(trims, lengths)]
  return [(np.flatnonzero(widths == width), int(width)) for width in np.unique(widths)]


def width_batches(groups, batch: int):
  """(rows, width) of each batch of at most `batch` rows of `width_groups`' groups, group by group."""
  for rows, width in groups:
    for start in range(0, len(rows), batch):
      yield rows[start : start + batch], width


def trimmed(a: np.ndarray, width: int | None) -> np.ndarray:
  """`a` cut to `width` positions on its last axis (None: as it is)."""
  return a if width is None or width >= a.shape[-1] else a[..., :width]


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
  """`a` with zero rows appended up to `size`, so every batch has one shape (one compilation)."""
  padded = np.zeros((size, *a.shape[1:]), a.dtype)
  padded[: len(a)] = a
  return padded


# Compiled functions are cached by architecture (GraphDef is hashable), so
# retraining arms, repeated runs in a notebook and benchmarks compile once.
@functools.lru_cache(maxsize=64)
def _forward_fn(graphdef: nnx.GraphDef, seed_map: str = "vmap"):
  def apply(params, rest, x):
    return nnx.merge(graphdef, params, rest)(x)

  return jax.jit(sharding.map_over_seeds(apply, (0, 0, None), seed_map))


def init_models(
  model: str, model_options: dict, *, input_shape, num_classes: int, seeds: Sequence[int], top_only: bool = False
) -> tuple[nnx.GraphDef, tuple]:
  """Stacked initial states of `model`, one per seed, built in one vmapped call
  (`top_only`: without its frozen part, which `pruning.training.frozen` runs once)."""
  model_options = validate_model_options(model, model_options)
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  # A checkpoint's weights are read while tracing, so its initialiser is built anew each time (the file may change).
  if "checkpoint" in model_options:
    graphdef, init = _build_initialiser(model, model_options, tuple(input_shape), num_classes, len(seeds), top_only)
  else:
    # Retraining arms, flagging folds and notebook reruns initialise one architecture again and again.
    options_key = json.dumps(model_options, sort_keys=True, default=repr)
    graphdef, init = _cached_initialiser(model, options_key, tuple(input_shape), num_classes, len(seeds), top_only)
  return graphdef, init(keys)


@functools.lru_cache(maxsize=16)
def _cached_initialiser(model, options_key: str, input_shape, num_classes, num_seeds, top_only):
  return _build_initialiser(model, json.loads(options_key), input_shape, num_classes, num_seeds, top_only)


def _build_initialiser(model, model_options, input_shape, num_classes, num_seeds, top_only):
  """(graphdef, compiled f(keys) -> stacked (params, rest)) for `num_seeds` seed keys."""
  model_options = validate_model_options(model, model_options)

  def build(key):
    built = create_model(model, input_shape=input_shape, num_classes=num_classes, rngs=nnx.Rngs(key), **model_options)
    if top_only:
      built.keep_top()
    return built

  graphdef = nnx.split(nnx.eval_shape(lambda: build(jax.random.key(0))), nnx.Param, ...)[0]

  def init(key):
    _, params, rest = nnx.split(build(key), nnx.Param, ...)
    return params, rest

  example_keys = jnp.stack([jax.random.key(s) for s in range(num_seeds)])
  lowered = jax.jit(jax.vmap(init)).lower(example_keys)
  # The program runs once, in milliseconds, but XLA's CPU optimiser took 22 s
  # to compile resnet18's initialisers (2.8 s for the CNN); unoptimised, 1.7 s
  # (0.7 s). The values agree to 1-2 ulp, deterministically.
  options = UNOPTIMISED if jax.default_backend() == "cpu" else None
  return graphdef, lowered.compile(compiler_options=options)
