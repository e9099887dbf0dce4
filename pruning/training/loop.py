"""The training loop: every seed of one model trained as a single jitted program.

Parameters of all seeds are stacked on a leading axis; each jitted step maps
the forward pass, gradient and optax update over the seeds
(`pruning.training.mesh.seed_map`: a convolutional model's seeds one after
another on one CPU device, otherwise `jax.vmap`, with the seeds split over
the devices). Seed `s` fixes both the initialisation (`jax.random.key(s)`)
and the data order (`numpy.random.default_rng(s)`), so the same seeds give
the same models, bit for bit, on the same machine.

Every epoch visits each example exactly once: the last, short batch is padded
with zero-weight entries instead of being dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pruning.data.normalization import Normalizer
from pruning.data.streaming import is_mapped, take_rows
from pruning.errors import UserError
from pruning.models import reads_token_ids
from pruning.runtime.progress import progress_bar
from pruning.training import buckets
from pruning.training import mesh as sharding
from pruning.training.balance import ClassBalance
from pruning.training.checkpointing import (
  KeptRun,
  TrainingCheckpointer,
  resume_training,
  run_signature,
  save_training,
  to_host,
)
from pruning.training.config import steps_per_epoch
from pruning.training.frozen import FrozenInputs, FrozenPart
from pruning.training.hooks import EpochHook
from pruning.training.plan import plan_training
from pruning.training.recorder import DEFAULT_WINDOW, DynamicsRecorder
from pruning.training.spec import ModelSpec, TrainData
from pruning.training.state import TrainedModels, init_models, trimmed
from pruning.training.step import build_train_step, combine_parts, plan_micro_batches, train_step_programs

MAX_STEPS_IN_FLIGHT = 4


def _epoch_order(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
  """One epoch's batches of one seed: (steps, batch) row positions, the last
  batch padded with position 0 (which `_batch_weights` gives weight 0)."""
  return _padded(rng.permutation(n), batch)


def _padded(positions: np.ndarray, batch: int) -> np.ndarray:
  """An epoch's positions as (steps, batch), the last batch padded with position 0 (weight 0)."""
  steps = math.ceil(len(positions) / batch)
  order = np.zeros(steps * batch, np.int32)
  order[: len(positions)] = positions
  return order.reshape(steps, batch)


def _batch_weights(n: int, batch: int) -> np.ndarray:
  """(steps, batch) weights of an epoch's entries, 0 for padding; the same for every seed."""
  steps = math.ceil(n / batch)
  return (np.arange(steps * batch) < n).astype(np.float32).reshape(steps, batch)


@dataclasses.dataclass
class TrainingState:
  """Everything a training run changes as it goes, and what a checkpoint saves."""

  params: Any  # stacked over seeds, on the device
  rest: Any
  opt_state: Any
  rngs: list[np.random.Generator]  # each seed's data order
  recorder: DynamicsRecorder | None
  checkpoints: dict[int, tuple] = dataclasses.field(default_factory=dict)  # epoch -> host state
  loss_history: list[list[float]] = dataclasses.field(default_factory=list)
  done: int = 0  # steps taken
  epoch: int = 0  # epochs finished


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What stays fixed while a run trains: the rows, the batches and the compiled step."""

  x: np.ndarray
  rows: np.ndarray
  labels: np.ndarray  # of the training rows, for class-aware sampling and weights
  epoch_size: int  # rows one epoch visits (fewer than `rows` when undersampling)
  batch: int
  per_epoch: int
  num_steps: int
  max_epoch: int
  normalizer: Normalizer
  balance: ClassBalance | None = None
  # placed and compiled by `_prepare`:
  streamed: bool = False  # features mapped from disk: each step's rows are gathered on the host
  x_device: Any = None
  y_device: Any = None
  step: Any = None
  # token inputs bucketed by length (`pruning.training.buckets`): each row's length,
  # the trim lengths, and the device inputs trimmed to each (filled as steps need them)
  lengths: np.ndarray | None = None
  trims: np.ndarray | None = None
  trimmed: dict = dataclasses.field(default_factory=dict)


def train_models(
  data: TrainData,
  spec: ModelSpec,
  *,
  num_steps: int | None = None,
  checkpoint_epochs: Iterable[int] = (),
  dynamics_window: int | None = DEFAULT_WINDOW,
  epoch_hooks: Sequence[EpochHook] = (),
  checkpointer: TrainingCheckpointer | None = None,
  kept_run: KeptRun | None = None,
  desc: str = "training",
  progress: bool = True,
) -> TrainedModels:
  """Trains one model per seed of `spec` on `data`, all seeds in one compiled program.

  Args:
    data: the examples (`pruning.training.TrainData`: inputs, labels, rows,
      token lengths, normalisation, class balance).
    spec: the model, its options, the seeds and the `TrainConfig`
      (`pruning.training.ModelSpec`).
    num_steps: optimisation steps; defaults to `spec.training.epochs` epochs.
      Retraining on a subset passes the full data's step count here (as Data
      Diet does).
    checkpoint_epochs: epochs whose state to keep (0 = initialisation).
    dynamics_window: J, the window of the dynamic-uncertainty score; None
      records no training dynamics (they take O(S x N x J) memory).
    epoch_hooks: `pruning.training.EpochHook`s, run at the end of every epoch
      with the stacked state (e.g. VoG's running statistics).
    checkpointer: a `pruning.training.TrainingCheckpointer`: the whole
      training state is saved at epoch ends and, if the checkpointer holds a
      checkpoint of this same run, training resumes from it (bit for bit).
      Hooks then need `state_dict()` and `load_state_dict()`.
    kept_run: a `pruning.training.KeptRun`: once trained, the same training
      is also saved as the run that keeps only its epochs (among
      `checkpoint_epochs`), with no dynamics and no hooks, so a later call
      for that run (`pruning.influence`) resumes it instead of training.

  Per-example training dynamics (forgetting, AUM, dynamic uncertainty, mean
  loss) are recorded as the steps run: see `pruning.training.recorder`.
  """
  if not isinstance(spec, ModelSpec) or not isinstance(data, TrainData):
    raise TypeError("train_models(data, spec) takes a TrainData and a ModelSpec (pruning.training)")
  x, y, num_classes, balance = data.x, data.y, data.num_classes, data.balance
  model, model_options, seeds, config = spec.model, spec.options, tuple(spec.seeds), spec.training
  # int32 positions: half the memory of int64 for the per-epoch order of large splits.
  rows = np.arange(len(y), dtype=np.int32) if data.rows is None else np.asarray(data.rows, np.int32)
  if rows.size == 0:
    raise UserError("cannot train on zero examples: keep at least one example")
  if rows.ndim == 2:  # each seed its own rows (`TrainData`)
    _check_rows_per_seed(rows, len(seeds), balance=data.balance, dynamics_window=dynamics_window)
  union = np.unique(rows) if rows.ndim == 2 else rows
  every_row = len(union) == len(x) and bool(np.all(union[1:] > union[:-1]))  # all rows, in order
  # Token ids are indices, not measurements: "auto" leaves them as they are (standardised ids
  # would be cast back to other ids). `TrainData.from_dataset` says so for text; a TrainData
  # built by hand around token ids gets the same.
  mode = "none" if data.normalize == "auto" and reads_token_ids(model) else data.normalize
  normalizer = data.normalizer or Normalizer.fit(x, rows=None if every_row else union, mode=mode)
  # A pretrained encoder's frozen part runs once over the data, not once per seed and epoch.
  frozen = FrozenPart.for_spec(model, model_options, input_shape=tuple(x.shape[1:]), num_classes=num_classes)
  if frozen is not None:
    inner = normalizer.inner if isinstance(normalizer, FrozenInputs) else normalizer
    normalizer = frozen.inputs(x, inner=inner, lengths=data.lengths, progress=progress)
  labels = np.asarray(y)[rows]
  if balance is not None and balance.sampling != "shuffle" and dynamics_window is not None:
    raise UserError("training dynamics count each example once per epoch: record them without class-aware sampling")
  epoch_size = rows.shape[-1] if balance is None else balance.epoch_size(labels)
  batch = min(config.batch_size, epoch_size)
  per_epoch = steps_per_epoch(epoch_size, batch)
  num_steps = int(num_steps) if num_steps is not None else config.epochs * per_epoch
  kept_epochs = sorted(set(int(e) for e in checkpoint_epochs))
  max_epoch = math.ceil(num_steps / per_epoch)
  if kept_epochs and (kept_epochs[0] < 0 or kept_epochs[-1] > max_epoch):
    raise UserError(
      f"checkpoint epochs {kept_epochs} fall outside 0..{max_epoch}: train for more epochs or ask for earlier ones"
    )
  window = dynamics_window
  input_shape = tuple(x.shape[1:])
  plan_training(
    model,
    model_options,
    input_shape=input_shape,
    num_classes=num_classes,
    seeds=seeds,
    n=rows.shape[-1],
    num_steps=num_steps,
    per_epoch=per_epoch,
    kept_states=len(kept_epochs),
    dynamics_window=window,
    desc=desc,
    progress=progress,
  )
  graphdef, (params, rest) = init_models(
    model, model_options, input_shape=input_shape, num_classes=num_classes, seeds=seeds, top_only=frozen is not None
  )
  sizes = _Plan(
    x=x,
    rows=rows,
    labels=labels,
    epoch_size=epoch_size,
    batch=batch,
    per_epoch=per_epoch,
    num_steps=num_steps,
    max_epoch=max_epoch,
    normalizer=normalizer,
    balance=balance,
  )
  recorder = DynamicsRecorder(len(seeds), rows.shape[-1], window=window) if window else None
  lengths = data.lengths if config.bucket_by_length else None
  models = (graphdef, params, rest)
  plan, state = _prepare(sizes, y, models, config=config, seeds=seeds, recorder=recorder, lengths=lengths)
  if 0 in kept_epochs:
    state.checkpoints[0] = to_host((state.params, state.rest))

  def signature_of(epochs, window) -> dict:
    signature = run_signature(model, model_options, seeds, config, num_steps, epochs, window, x, y, rows)
    if balance is not None:
      signature["balance"] = balance.record()
    if plan.lengths is not None:
      signature["bucketed"] = True
    return signature

  if kept_run is not None and not set(kept_run.epochs) <= set(kept_epochs):
    raise ValueError(f"kept_run epochs {kept_run.epochs} must be among checkpoint_epochs {kept_epochs}")
  if checkpointer is not None:
    signature = signature_of(kept_epochs, window)
    resume_training(checkpointer, signature, state, epoch_hooks)
  resumed_epoch = state.epoch  # > 0: epochs restored from the checkpointer, not trained in this call
  # Steps, not epochs: a long first epoch moves the bar from its first step.
  bar = progress_bar(total=num_steps, initial=state.done, desc=desc, unit="step", enabled=progress)
  while state.epoch < max_epoch:
    epoch_loss = _train_epoch(plan, state, on_step=bar.update)
    if state.epoch in kept_epochs:
      state.checkpoints[state.epoch] = to_host((state.params, state.rest))
    for hook in epoch_hooks:
      hook(state.epoch, graphdef, normalizer, state.params, state.rest)
    if checkpointer is not None:
      save_training(checkpointer, signature, state, epoch_hooks, force=state.epoch == max_epoch)
    bar.set_postfix(epoch=f"{state.epoch}/{max_epoch}", loss=f"{float(epoch_loss.mean()):.4f}", refresh=False)
  bar.close()
  if kept_run is not None and kept_run.checkpointer.latest_epoch() != max_epoch:
    kept = {e: state.checkpoints[e] for e in kept_run.epochs}
    finished = dataclasses.replace(state, recorder=None, checkpoints=kept)
    save_training(kept_run.checkpointer, signature_of(sorted(kept), None), finished, [], force=True)
  return TrainedModels(
    model=model,
    model_options=model_options,
    input_shape=input_shape,
    num_classes=num_classes,
    seeds=seeds,
    normalizer=normalizer,
    graphdef=graphdef,
    state=to_host((state.params, state.rest)),
    checkpoints=state.checkpoints,
    num_steps=num_steps,
    loss_history=state.loss_history,
    dynamics=state.recorder.scores() if state.recorder is not None else {},
    extras={"resumed_epoch": resumed_epoch},
  )


def _prepare(sizes: _Plan, y, models, *, config, seeds, recorder, lengths=None) -> tuple[_Plan, TrainingState]:
  """Places the data and the seeds' `models` (graphdef, params, rest) on the
  devices and compiles the step: `sizes` is the plan without them (rows,
  batches, steps, normalizer, balance)."""
  graphdef, params, rest = models
  x, rows, normalizer, batch, num_steps = sizes.x, sizes.rows, sizes.normalizer, sizes.batch, sizes.num_steps
  streamed = is_mapped(x) or getattr(normalizer, "mapped", False)
  if lengths is not None and len(lengths) != len(x):
    lengths = None  # not one length per row: full length
  # With several devices the seeds' states split over a mesh (`pruning.training.mesh`).
  mesh = sharding.device_mesh(len(seeds))
  params, rest = sharding.place_seeds((params, rest), mesh)
  seed_map = sharding.seed_map(params, "unroll")
  _, init_optimizer = train_step_programs(graphdef, config, num_steps, streamed, seed_map)
  opt_state = init_optimizer(params)
  x_device = None if streamed else sharding.replicate(jnp.asarray(normalizer(x)), mesh)
  y_device = sharding.replicate(jnp.asarray(np.asarray(y, np.int32)), mesh)
  inputs_like = normalizer(take_rows(x, rows.reshape(-1)[:1]))[None] if streamed else x_device
  micro = plan_micro_batches(
    graphdef, params, rest, inputs_like, y_device, batch=batch, gathered=streamed, seed_map=seed_map, mesh=mesh
  )
  step = build_train_step(
    graphdef,
    config,
    num_steps,
    gathered=streamed,
    seed_map=seed_map,
    mesh=mesh,
    batch=batch,
    micro=micro,
    logit_offset=None if sizes.balance is None else sizes.balance.logit_offset,
  )
  plan = dataclasses.replace(
    sizes,
    streamed=streamed,
    x_device=x_device,
    y_device=y_device,
    step=step,
    lengths=None if lengths is None else np.asarray(lengths, np.int64)[rows],
    # Pooled frozen states (`pruning.training.frozen`) keep the grouped order but have no positions to trim.
    trims=None if lengths is None or not getattr(normalizer, "trims", True) else buckets.trim_lengths(int(x.shape[-1])),
  )
  state = TrainingState(
    params=params, rest=rest, opt_state=opt_state, rngs=[np.random.default_rng(s) for s in seeds], recorder=recorder
  )
  return plan, state


def _seed_rows(a: np.ndarray, seed: int) -> np.ndarray:
  """Seed `seed`'s row of per-seed (S, n) rows or lengths; shared (n,) ones as they are."""
  return a[seed] if a.ndim == 2 else a


def _check_rows_per_seed(rows: np.ndarray, seeds: int, *, balance, dynamics_window) -> None:
  if rows.shape[0] != seeds:
    raise UserError(f"rows for each seed: {rows.shape[0]} row sets for {seeds} seeds; give one set a seed")
  if balance is not None:
    raise UserError("class-aware sampling needs one set of rows: train each seed's rows on their own")
  if dynamics_window is not None:
    raise UserError("training dynamics are recorded over one set of rows: pass dynamics_window=None")


def _train_epoch(plan: _Plan, state: TrainingState, *, on_step=None) -> np.ndarray:
  """Runs one epoch's steps of every seed; returns its (S,) mean loss.
  `on_step(1)` is called as each step's results arrive (the progress bar)."""
  n, batch, balance = plan.epoch_size, plan.batch, plan.balance
  if balance is None:
    orders = [_epoch_order(rng, n, batch) for rng in state.rngs]
  else:
    orders = [_padded(balance.epoch_positions(rng, plan.labels), batch) for rng in state.rngs]
  if plan.lengths is not None:  # each seed's order by its own rows' lengths (one set shared, or its own)
    orders = [
      buckets.group_by_length([o], _seed_rows(plan.lengths, s), n, state.epoch)[0] for s, o in enumerate(orders)
    ]
  weight = _batch_weights(n, batch)
  steps = min(plan.per_epoch, plan.num_steps - state.done)
  losses, stats = [], []  # on the host: each step's (S,) loss and (S, batch) statistics
  in_flight: collections.deque = collections.deque()
  for k in range(steps):
    # Step k's rows of every seed, (S, batch): built per step, so no (steps, S, batch) copies.
    idx = np.stack([_seed_rows(plan.rows, s)[order[k]] for s, order in enumerate(orders)]).astype(np.int32)
    w = np.broadcast_to(weight[k], idx.shape)
    if balance is not None and balance.class_weights is not None:
      class_weights = np.asarray(balance.class_weights, np.float32)
      w = w * np.stack([class_weights[plan.labels[order[k]]] for order in orders])
    inputs, trim = plan.x_device, None
    if plan.lengths is not None and plan.trims is not None:
      longest = max(_seed_rows(plan.lengths, s)[order[k]].max() for s, order in enumerate(orders))
      trim = buckets.step_length(int(longest), plan.trims)
      if not plan.streamed and trim not in plan.trimmed:
        plan.trimmed[trim] = plan.x_device[..., :trim]
      inputs = plan.trimmed.get(trim)
    if plan.streamed:  # the step's rows gathered on the host, trimmed as the rows on the device would be
      gathered = trimmed(plan.normalizer(take_rows(plan.x, idx.reshape(-1))), trim)
      inputs = gathered.reshape(idx.shape + gathered.shape[1:])
    state.params, state.opt_state, loss_parts, stat_parts = plan.step(
      state.params, state.rest, state.opt_state, inputs, plan.y_device, idx, w
    )
    in_flight.append((loss_parts, stat_parts if state.recorder is not None else None))
    # Dispatch is asynchronous: a few steps stay queued (the device never
    # waits for the host); older ones are fetched, so neither queued
    # batches nor per-step device arrays pile up over an epoch.
    while len(in_flight) > MAX_STEPS_IN_FLIGHT or (k == steps - 1 and in_flight):
      loss, batch_stats = combine_parts(*jax.device_get(in_flight.popleft()))
      losses.append(loss)
      if on_step is not None:
        on_step(1)
      if batch_stats is not None:
        stats.append(batch_stats)
  state.done += steps
  state.epoch += 1
  epoch_loss = np.stack(losses).mean(axis=0)
  if state.recorder is not None:
    positions = np.stack([order[:steps].reshape(-1) for order in orders])  # (S, steps * batch)
    weights = np.broadcast_to(weight[:steps].reshape(-1), positions.shape)
    num_seeds = len(state.rngs)
    stacked = {key: np.stack([st[key] for st in stats], axis=1).reshape(num_seeds, -1) for key in stats[0]}
    state.recorder.record_epoch(positions, weights, stacked)
  if not np.all(np.isfinite(epoch_loss)):
    raise UserError(f"training diverged at epoch {state.epoch} (loss {epoch_loss.tolist()}): lower the learning rate")
  state.loss_history.append(epoch_loss.tolist())
  return epoch_loss
