"""Training dynamics, recorded by the training loop itself (no extra pass over the data).

Every training step already computes each example's logits; the step returns
four numbers per example (logit margin, correctness, p_y, loss) and
`DynamicsRecorder` folds them into running statistics, per seed. Because an
epoch visits every example exactly once, "per epoch" below means "each time
the example was trained on".

- forgetting events (Toneva et al., ICLR 2019): transitions from correct to
  incorrect between consecutive visits. Examples never classified correctly
  get the number of visits, more than any learned example can reach (at most
  half the visits), so they rank as the hardest ("never learned = maximum").
- AUM, area under the margin (Pleiss et al., NeurIPS 2020): the mean over
  visits of `z_y - max_{i != y} z_i` (logits). Low or negative flags likely
  mislabeled examples.
- dynamic uncertainty (He et al., CVPR 2024): the mean, over sliding windows
  of J consecutive epochs, of the standard deviation of p_y within the window.
  With fewer than J epochs recorded, one window spans them all.
- mean training loss: the mean over visits of the cross-entropy.

Memory: O(S x N x J) for the p_y window; nothing grows with the epoch count.
"""

from __future__ import annotations

import numpy as np

DYNAMICS = ("forgetting", "aum", "dynamic_uncertainty", "mean_loss")
DEFAULT_WINDOW = 10


class DynamicsRecorder:
  """Running per-example statistics of S seeds over N training examples."""

  def __init__(self, num_seeds: int, num_examples: int, *, window: int = DEFAULT_WINDOW):
    shape = (num_seeds, num_examples)
    self.window = window
    self.visits = np.zeros(shape, np.int64)
    self.forgetting = np.zeros(shape, np.int64)
    self.last_correct = np.zeros(shape, bool)
    self.ever_correct = np.zeros(shape, bool)
    self.margin_sum = np.zeros(shape, np.float64)
    self.loss_sum = np.zeros(shape, np.float64)
    self.p_true_window = np.zeros((window,) + shape, np.float32)
    self.epochs = 0
    self.window_std_sum = np.zeros(shape, np.float64)
    self.windows = 0

  def state_dict(self) -> dict:
    """Every running statistic (arrays and counters), for resumable training."""
    return dict(vars(self))

  def load_state_dict(self, state: dict) -> None:
    for key, value in state.items():
      setattr(self, key, value if isinstance(value, np.ndarray) else int(value))

  def record_epoch(self, positions: np.ndarray, weights: np.ndarray, stats: dict[str, np.ndarray]) -> None:
    """Folds one epoch in: `positions` (S, K) rows visited, `weights` (S, K) 0 for padding,
    `stats` (S, K) arrays `margin`, `correct`, `p_true`, `loss`."""
    num_seeds, _ = self.visits.shape
    complete = True
    p_true = np.zeros(self.visits.shape, np.float32)
    for s in range(num_seeds):
      real = weights[s] > 0
      rows = positions[s][real]
      correct = stats["correct"][s][real].astype(bool)
      seen = self.visits[s, rows] > 0
      self.forgetting[s, rows] += seen & self.last_correct[s, rows] & ~correct
      self.last_correct[s, rows] = correct
      self.ever_correct[s, rows] |= correct
      self.visits[s, rows] += 1
      self.margin_sum[s, rows] += stats["margin"][s][real]
      self.loss_sum[s, rows] += stats["loss"][s][real]
      p_true[s, rows] = stats["p_true"][s][real]
      complete &= len(rows) == self.visits.shape[1]  # an epoch visits each row at most once
    if not complete:  # a step budget can stop mid-epoch; windows need whole epochs
      return
    self.p_true_window[self.epochs % self.window] = p_true
    self.epochs += 1
    if self.epochs >= self.window:
      self.window_std_sum += self.p_true_window.std(axis=0)
      self.windows += 1

  def scores(self) -> dict[str, np.ndarray]:
    """{name: (S, N) float32} for every name in `DYNAMICS`."""
    visits = np.maximum(self.visits, 1)
    forgetting = np.where(self.ever_correct, self.forgetting, self.visits)
    if self.windows:
      uncertainty = self.window_std_sum / self.windows
    else:
      uncertainty = self.p_true_window[: max(self.epochs, 1)].std(axis=0)
    return {
      "forgetting": forgetting.astype(np.float32),
      "aum": (self.margin_sum / visits).astype(np.float32),
      "dynamic_uncertainty": uncertainty.astype(np.float32),
      "mean_loss": (self.loss_sum / visits).astype(np.float32),
    }
