"""What the training loop calls at the end of every epoch.

A score that needs more of training than its end state (VoG's running
gradient statistics, for one) hands the loop an `EpochHook`; the loop calls it
with the stacked state of every seed after each epoch. A hook of a run that
is checkpointed must also be a `CheckpointableHook`, so that a resumed run
restores what it had gathered.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from flax import nnx

from pruning.data.normalization import Normalizer


@runtime_checkable
class EpochHook(Protocol):
  """`hook(epoch, graphdef, normalizer, params, rest)` after every epoch.

  `params` and `rest` are the stacked states of every seed, on the device;
  their buffers are donated to the next step, so a hook copies what it keeps.
  """

  def __call__(self, epoch: int, graphdef: nnx.GraphDef, normalizer: Normalizer, params: Any, rest: Any) -> None: ...


@runtime_checkable
class CheckpointableHook(EpochHook, Protocol):
  """An epoch hook whose gathered state is saved with each checkpoint."""

  def state_dict(self) -> dict: ...

  def load_state_dict(self, state: dict) -> None: ...
