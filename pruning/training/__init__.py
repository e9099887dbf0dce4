"""Training S seeds of one model as one compiled program.

One concept per module:

- `config`: `TrainConfig`, the optimisation settings (optax) shared by proxy
  training and retraining;
- `spec`: `ModelSpec` (model, options, seeds, training) and `TrainData`
  (inputs, labels, rows, lengths, normalisation, balance): what every
  trainer takes;
- `state`: `TrainedModels`, the trained seeds stacked on a leading axis, and
  inference with them;
- `step`: `build_train_step`, one jitted optimisation step of every seed,
  split into micro-batches where that is faster on CPU;
- `loop`: `train_models`, the epochs over one `TrainingState`;
- `hooks`: `EpochHook`, what the loop calls after every epoch;
- `recorder`: `DynamicsRecorder`, per-example training dynamics recorded as
  the steps run (forgetting, AUM, dynamic uncertainty, mean loss);
- `checkpointing`: `TrainingCheckpointer`, resumable training, bit for bit;
- `plan`: memory and step checks before anything is allocated;
- `mesh`: the `seeds` x `data` device mesh and `NamedSharding` placements.
"""

from pruning.training.balance import ClassBalance
from pruning.training.checkpointing import KeptRun, TrainingCheckpointer, job_checkpointer, kept_run_store
from pruning.training.config import OPTIMIZERS, SCHEDULES, TrainConfig, steps_per_epoch
from pruning.training.frozen import FrozenInputs, FrozenPart
from pruning.training.hooks import CheckpointableHook, EpochHook
from pruning.training.loop import TrainingState, train_models
from pruning.training.plan import MAX_STEPS, parameter_count, plan_training
from pruning.training.recorder import DEFAULT_WINDOW, DYNAMICS, DynamicsRecorder
from pruning.training.spec import ModelSpec, TrainData
from pruning.training.state import (
  EVAL_BATCH,
  TrainedModels,
  init_models,
  pad_rows,
  trimmed,
  width_batches,
  width_groups,
)
from pruning.training.step import (
  MicroBatches,
  build_train_step,
  combine_parts,
  example_stats,
  plan_micro_batches,
  train_step_programs,
)

__all__ = [
  "DEFAULT_WINDOW",
  "DYNAMICS",
  "EVAL_BATCH",
  "MAX_STEPS",
  "OPTIMIZERS",
  "SCHEDULES",
  "CheckpointableHook",
  "ClassBalance",
  "DynamicsRecorder",
  "EpochHook",
  "FrozenInputs",
  "FrozenPart",
  "MicroBatches",
  "ModelSpec",
  "TrainConfig",
  "TrainData",
  "TrainedModels",
  "TrainingCheckpointer",
  "KeptRun",
  "kept_run_store",
  "job_checkpointer",
  "TrainingState",
  "build_train_step",
  "combine_parts",
  "example_stats",
  "init_models",
  "pad_rows",
  "parameter_count",
  "plan_micro_batches",
  "plan_training",
  "steps_per_epoch",
  "train_models",
  "train_step_programs",
  "trimmed",
  "width_batches",
  "width_groups",
]
