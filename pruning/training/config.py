"""Optimisation settings shared by proxy training and retraining."""

from __future__ import annotations

import dataclasses
import math

import optax

from pruning.errors import UserError, unknown_name_error
from pruning.runtime.fields import choices_text, option

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "linear")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
  """Optimisation settings shared by proxy training and retraining."""

  # One set of defaults for the CLI, YAML and Python: the quick start's.
  epochs: int = 30  # its flag's default is each command's (proxies train fewer epochs)
  batch_size: int = option(64, help="examples per step (default: %(default)s)")
  optimizer: str = option("adam", help=f"{choices_text(OPTIMIZERS)} (default: %(default)s)")
  learning_rate: float = option(1e-3, help="default: %(default)s")
  momentum: float = 0.9
  weight_decay: float = option(0.0, help="default: %(default)s")
  schedule: str = option("constant", help=f"learning-rate schedule: {choices_text(SCHEDULES)} (default: %(default)s)")
  # The first `warmup` fraction of the steps ramps the learning rate up linearly
  # from 0 (BERT fine-tuning uses 0.1 with the `linear` decay).
  warmup: float = option(
    0.0, help="fraction of the steps over which the learning rate rises from 0 (default: %(default)s; BERT: 0.1)"
  )
  # Token inputs: batches grouped by length and trimmed of padding (`pruning.training.buckets`).
  bucket_by_length: bool = option(True, help="text: group batches by length and trim their padding (default: on)")

  def __post_init__(self):
    from pruning.runtime.validation import check_fields

    check_fields(self, "training")
    if not isinstance(self.epochs, int) or self.epochs < 1:
      raise UserError(f"epochs must be a positive integer, got {self.epochs!r}")
    if not isinstance(self.batch_size, int) or self.batch_size < 1:
      raise UserError(f"batch_size must be a positive integer, got {self.batch_size!r}")
    if self.optimizer not in OPTIMIZERS:
      raise unknown_name_error("optimizer", self.optimizer, OPTIMIZERS)
    if self.schedule not in SCHEDULES:
      raise unknown_name_error("schedule", self.schedule, SCHEDULES)
    if not self.learning_rate > 0:
      raise UserError(f"learning_rate must be positive, got {self.learning_rate!r}")
    if self.weight_decay < 0:
      raise UserError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
    if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup < 1:
      raise UserError(f"warmup {self.warmup!r} must be a fraction of the steps in [0, 1), e.g. 0.1")

  def learning_rate_schedule(self, num_steps: int) -> optax.Schedule | float:
    """`constant`, `cosine` (to 0) or `linear` (to 0) decay, after `warmup` of the steps
    rising linearly from 0 (Devlin et al.'s fine-tuning schedule is `linear` with 0.1)."""
    num_steps = max(num_steps, 1)
    warm = int(round(self.warmup * num_steps))
    decay = {
      "constant": optax.constant_schedule(self.learning_rate),
      "cosine": optax.cosine_decay_schedule(self.learning_rate, max(num_steps - warm, 1)),
      "linear": optax.linear_schedule(self.learning_rate, 0.0, max(num_steps - warm, 1)),
    }[self.schedule]
    if not warm:
      return self.learning_rate if self.schedule == "constant" else decay
    return optax.join_schedules([optax.linear_schedule(0.0, self.learning_rate, warm), decay], [warm])

  def make_optimizer(self, num_steps: int) -> optax.GradientTransformation:
    learning_rate = self.learning_rate_schedule(num_steps)
    if self.optimizer == "adam":
      return optax.adamw(learning_rate, weight_decay=self.weight_decay)
    return optax.chain(
      optax.add_decayed_weights(self.weight_decay),
      optax.sgd(learning_rate, momentum=self.momentum),
    )


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return math.ceil(num_examples / min(batch_size, num_examples))
