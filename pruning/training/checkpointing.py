"""Resumable training: the whole state of `train_models` saved at epoch ends.

A checkpoint holds the model and optimiser state of every seed and the states
kept for `NAME@E` scores (written with Orbax), plus what lives on the host:
the data-order generators, the training-dynamics recorder, epoch hooks such as
VoG's running statistics, and the loss history (an `.npz` written with
`allow_pickle=False` and a JSON file). Resuming restores all of it, so a run
killed at any moment and resumed gives bit-for-bit the result of an
uninterrupted one.

Each checkpoint is written into a staging folder and renamed into place once
complete, so a kill mid-save leaves the previous checkpoint intact; older
checkpoints are removed after the rename. A `signature` (model, options,
seeds, training settings, data identity) guards against resuming another
run's state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from pruning.errors import UserError
from pruning.training.hooks import CheckpointableHook

_NAME = re.compile(r"epoch-(\d{6})$")


# A job's checkpoints (a run's proxies and retraining arms, a score job's
# proxies) are written at most this often, and at the end: a few minutes of
# training is what a kill can lose. PRUNING_CHECKPOINT_SECONDS overrides it.
JOB_CHECKPOINT_SECONDS = 120.0


def job_checkpointer(folder: str | os.PathLike) -> TrainingCheckpointer:
  """The checkpointer of a job's working folder, saving at most every `JOB_CHECKPOINT_SECONDS`."""
  raw = os.environ.get("PRUNING_CHECKPOINT_SECONDS")
  try:
    seconds = JOB_CHECKPOINT_SECONDS if raw is None else float(raw)
  except ValueError:
    raise UserError(f"PRUNING_CHECKPOINT_SECONDS={raw!r} is not a number of seconds") from None
  return TrainingCheckpointer(folder, min_seconds=seconds)


class TrainingCheckpointer:
  """Saves to and resumes from `folder` (created on first save)."""

  def __init__(self, folder: str | os.PathLike, *, every: int = 1, min_seconds: float = 0.0, cache: bool = False):
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
      raise UserError(f"checkpoint interval {every!r} must be a whole number of epochs >= 1")
    if isinstance(min_seconds, bool) or not isinstance(min_seconds, (int, float)) or not 0 <= min_seconds < 1e9:
      raise UserError(f"checkpoint interval {min_seconds!r} must be a number of seconds >= 0")
    self.folder = Path(folder)
    # A cache's entry (`kept_run_store`) that belongs to another run or cannot be read is discarded
    # with a warning and the run trains afresh; a job's own folder refuses, naming the folder.
    self.cache = cache
    self.every = every
    self.min_seconds = float(min_seconds)
    self._last_save = time.monotonic()
    self.saves = 0  # what this checkpointer wrote (benchmarks/checkpointing.py)
    self.bytes_written = 0

  def due(self, epoch: int, *, force: bool = False) -> bool:
    """Whether the end of `epoch` is saved: every `every` epochs, at most once per
    `min_seconds` (so a long training on a small subset, which has many short
    epochs, does not write a checkpoint each epoch), and always when `force`d."""
    if force:
      return True
    return epoch % self.every == 0 and time.monotonic() - self._last_save >= self.min_seconds

  def _complete(self) -> list[tuple[int, Path]]:
    if not self.folder.is_dir():
      return []
    found = [
      (int(m.group(1)), p)
      for p in self.folder.iterdir()
      if (m := _NAME.match(p.name)) and p.is_dir() and not p.is_symlink()  # never a planted link's target
    ]
    return sorted(found)

  def latest_epoch(self) -> int | None:
    complete = self._complete()
    return complete[-1][0] if complete else None

  def save(
    self,
    epoch: int,
    *,
    signature: dict,
    device_state: dict,
    host: dict,
    arrays: dict[str, np.ndarray],
    force: bool = False,
  ) -> None:
    """Writes the state at the end of `epoch` (every `every` epochs, or when `force`)."""
    if not self.due(epoch, force=force):
      return
    try:
      self._save(epoch, signature=signature, device_state=device_state, host=host, arrays=arrays)
    except OSError as error:
      if not self.cache:
        raise
      import warnings  # a cache entry that cannot be written (a full disk) is not kept, and the job goes on

      warnings.warn(f"proxy checkpoints not kept ({error.strerror or error}): {self.folder}", UserWarning, stacklevel=4)
      self.clear()

  def _save(
    self, epoch: int, *, signature: dict, device_state: dict, host: dict, arrays: dict[str, np.ndarray]
  ) -> None:
    import orbax.checkpoint as ocp

    self.folder.mkdir(parents=True, exist_ok=True)
    # A cache entry may be written by two processes at once (two notebooks): each stages its own.
    staging = self.folder / (f"epoch-{epoch:06d}.partial" + (f"-{os.getpid()}" if self.cache else ""))
    _remove(staging)
    staging.mkdir()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((staging / "device").absolute(), device_state)
    checkpointer.wait_until_finished()
    with open(staging / "host.npz", "wb") as handle:
      np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stubs take **arrays for its flags
    (staging / "host.json").write_text(json.dumps({"signature": signature, "epoch": epoch, **host}))
    final = self.folder / f"epoch-{epoch:06d}"
    _remove(final)
    os.replace(staging, final)
    self._last_save = time.monotonic()
    self.saves += 1
    self.bytes_written += sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    for old_epoch, path in self._complete():
      if old_epoch < epoch:
        shutil.rmtree(path, ignore_errors=True)

  def load(self, *, signature: dict, target_fn):
    """The newest checkpoint as (device_state, host, arrays), or None if there is none.

    `target_fn(host)` gives the structure to restore the device state into.
    """
    complete = self._complete()
    if not complete:
      return None
    import orbax.checkpoint as ocp

    epoch, path = complete[-1]
    try:
      host = json.loads((path / "host.json").read_text())
      if host.pop("signature") != json.loads(json.dumps(signature)):
        raise UserError(
          f"the checkpoints in {str(self.folder)!r} belong to another training run (different data,"
          " model, seeds or settings): delete that folder to start afresh, or give this run another one"
        )
      target = target_fn(host)
      import jax

      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
      device_state = ocp.StandardCheckpointer().restore((path / "device").absolute(), abstract)
      with np.load(path / "host.npz", allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    except Exception as error:
      if not self.cache:
        raise
      import warnings

      warnings.warn(
        f"kept proxy checkpoints in {self.folder.name[:12]} are unusable"
        f" ({str(error)[:100] or type(error).__name__}): discarded, the proxies train again",
        UserWarning,
        stacklevel=4,
      )
      self.clear()
      return None
    return device_state, host, arrays

  def clear(self) -> None:
    """Removes the checkpoints this class wrote, then the folder if that left it
    empty: never anything else that is in it."""
    if self.folder.is_symlink() or not self.folder.is_dir():
      return
    for path in self.folder.iterdir():
      if re.fullmatch(r"epoch-\d{6}(\.partial(-\d+)?)?", path.name) and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    try:
      self.folder.rmdir()
    except OSError:
      pass  # not empty: something of the user's is in it


def _remove(path: Path) -> None:
  """Removes a checkpoint folder, or only the link where a symlink stands (never its target)."""
  if path.is_symlink() or path.is_file():
    path.unlink()
  elif path.exists():
    shutil.rmtree(path)


def generator_states(rngs) -> list[dict]:
  return [rng.bit_generator.state for rng in rngs]


def restore_generators(rngs, states) -> None:
  for rng, state in zip(rngs, states):
    rng.bit_generator.state = state


def run_signature(model, model_options, seeds, config, num_steps, checkpoint_epochs, window, x, y, rows) -> dict:
  """What a checkpoint must match to be resumed: the run's settings and data identity."""
  digest = hashlib.sha256()
  for array in (np.asarray(y), rows, np.asarray(x.shape)):
    digest.update(np.ascontiguousarray(array).tobytes())
  flat = np.asarray(rows).reshape(-1)  # per-seed rows: the first of the first seed's (the same for one set)
  digest.update(np.ascontiguousarray(x[flat[: min(len(flat), 256)]]).tobytes())
  return {
    "model": model,
    "model_options": model_options,
    "seeds": list(seeds),
    "config": dataclasses.asdict(config),
    "num_steps": num_steps,
    "checkpoint_epochs": list(checkpoint_epochs),
    "window": window,
    "data": digest.hexdigest(),
  }


@dataclasses.dataclass(frozen=True)
class KeptRun:
  """Where `train_models` saves, once it has finished, the same training as the run that keeps
  only `epochs`' states and records no dynamics and no hooks: the run `pruning.influence` asks
  for, which then resumes it, finished, instead of training again."""

  checkpointer: TrainingCheckpointer
  epochs: tuple[int, ...]


def kept_run_store(key: dict) -> TrainingCheckpointer:
  """The cache's checkpointer for the finished run `key` describes (settings and data identity):
  `$PRUNING_CACHE_DIR/proxy-checkpoints/<SHA-256 of key>`, saved once, at the end."""
  from pruning.runtime.cache import cache_root

  digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
  return TrainingCheckpointer(cache_root() / "proxy-checkpoints" / digest[:40], min_seconds=1e8, cache=True)


def _host_state(recorder, hooks) -> tuple[dict, dict]:
  arrays: dict = {}
  scalars: dict = {}
  recorded = [("recorder", recorder.state_dict())] if recorder is not None else []
  for prefix, state in recorded + [(f"hook{i}", _hook_state(hook)) for i, hook in enumerate(hooks)]:
    for key, value in state.items():
      if isinstance(value, np.ndarray):
        arrays[f"{prefix}/{key}"] = value
      else:
        scalars[f"{prefix}/{key}"] = value
  return arrays, scalars


def _hook_state(hook) -> dict:
  if not isinstance(hook, CheckpointableHook):
    raise UserError(f"epoch hook {hook!r} has no state_dict(), so training with it cannot be checkpointed")
  return hook.state_dict()


def save_training(checkpointer: TrainingCheckpointer, signature: dict, state, hooks, *, force: bool) -> None:
  """Saves a `pruning.training.loop.TrainingState` and the hooks' gathered state at the end of `state.epoch`."""
  if not checkpointer.due(state.epoch, force=force):
    return  # gathering the state costs a device-to-host copy: only when it is saved
  arrays, scalars = _host_state(state.recorder, hooks)
  checkpointer.save(
    state.epoch,
    signature=signature,
    device_state={
      "params": state.params,
      "rest": state.rest,
      "opt_state": state.opt_state,
      "checkpoints": {str(e): kept for e, kept in state.checkpoints.items()},
    },
    host={
      "loss_history": state.loss_history,
      "done": state.done,
      "rngs": generator_states(state.rngs),
      "scalars": scalars,
      "checkpoint_epochs": sorted(state.checkpoints),
    },
    arrays=arrays,
    force=force,
  )


def resume_training(checkpointer: TrainingCheckpointer, signature: dict, state, hooks) -> bool:
  """Restores the newest checkpoint of this run into `state` and the hooks; False if there is none."""

  def target(host):
    return {
      "params": state.params,
      "rest": state.rest,
      "opt_state": state.opt_state,
      "checkpoints": {str(e): (state.params, state.rest) for e in host["checkpoint_epochs"]},
    }

  loaded = checkpointer.load(signature=signature, target_fn=target)
  if loaded is None:
    return False
  device, host, arrays = loaded
  states: dict[str, dict] = {}
  for key, value in list(arrays.items()) + list(host["scalars"].items()):
    prefix, name = key.split("/", 1)
    states.setdefault(prefix, {})[name] = value
  if state.recorder is not None:
    state.recorder.load_state_dict(states.pop("recorder"))
  for i, hook in enumerate(hooks):
    hook.load_state_dict(states.get(f"hook{i}", {}))
  restore_generators(state.rngs, host["rngs"])
  state.params, state.rest, state.opt_state = device["params"], device["rest"], device["opt_state"]
  state.checkpoints = {int(e): to_host(tuple(kept)) for e, kept in device["checkpoints"].items()}
  state.loss_history, state.done, state.epoch = host["loss_history"], host["done"], host["epoch"]
  return True


def to_host(tree):
  """A real host copy of a device tree (its buffers are donated to the next step)."""
  return jax.tree.map(lambda a: np.array(a, copy=True), tree)
