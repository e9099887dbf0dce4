"""VoG, variance of gradients (Agarwal, D'souza, Hooker, CVPR 2022).

At K checkpoints t, S_t = d z_y / d x, the gradient of the true-class logit
with respect to the (normalised) input, averaged over colour channels for
images. VoG = mean over pixels of `sqrt((1/K) sum_t (S_t - mean_t S)^2)`,
then normalised:

- `vog`: within each class, `(v - mean_class) / std_class` (the paper's);
- `vog_dataset`: over the whole dataset, `(v - mean) / std`;
- `vog_raw`: unnormalised.

On text (Anand et al., 2023) the input is the token embeddings: S_t is the
gradient of the true-class logit with respect to each token's input
embedding E_tok[id] (L x D per example, from the model's
`token_embeddings`), and VoG is the standard deviation over checkpoints
averaged over the real (non-padding) tokens and the embedding dimensions.

The K checkpoints are the ends of proxy-training epochs in a window: `all`
epochs 1..E (the default), `early` (1..ceil(E/2)) or `late`
(floor(E/2)+1..E); every epoch of the window, or K evenly spaced ones
(`vog_checkpoints=K`, spread over the window as the paper spreads them over
training). Agarwal et al. report that VoG ranks examples differently early
and late in training; the window lets a user choose. A running mean and
variance (Welford) is kept per input element instead of K stored gradients:
memory is two float32 arrays of S x N x pixels (text: S x N x L x D),
whatever K. Normalisation is done per seed before the manifest averages
seeds.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pruning.runtime.call_size import rows_per_call
from pruning.scores.context import ScoringContext
from pruning.scores.registry import HARDER_HIGHER, register_score
from pruning.training import mesh as sharding
from pruning.training import pad_rows, trimmed, width_batches, width_groups

VOG_SCORES = ("vog", "vog_dataset", "vog_raw")
BATCH = 512


WINDOWS = ("all", "early", "late")


@functools.lru_cache(maxsize=32)
def _true_logit_input_grads(graphdef: nnx.GraphDef, channel_axis: bool, seed_map: str, embeddings: bool = False):
  """f(params, rest, x, y) -> (S, B, *pixels) gradients of z_y w.r.t. x
  (`embeddings`: (S, B, L, D) w.r.t. the token embeddings)."""

  def one_seed(params, rest, x, y):
    model = nnx.merge(graphdef, params, rest)

    def summed_true_logits(inputs):
      logits = model(x, token_embeddings=inputs) if embeddings else model(inputs)
      return jnp.sum(jnp.take_along_axis(logits, y[:, None], axis=-1))

    # examples are independent: row i is d z_{i,y_i} / d x_i
    grads = jax.grad(summed_true_logits)(model.token_embeddings(x) if embeddings else x)
    return grads.mean(axis=-1) if channel_axis else grads

  return jax.jit(sharding.map_over_seeds(one_seed, (0, 0, None, None), seed_map))


class VoGAccumulator:
  """An epoch hook for `train_models` keeping Welford statistics of the input gradients.

  With `pad_id` (text), the gradients are taken with respect to the token
  embeddings, and `raw()` averages over the tokens that are not padding.
  """

  def __init__(self, x: np.ndarray, y: np.ndarray, *, epochs=None, pad_id: int | None = None, model=None, options=None):
    self.x, self.y = x, np.asarray(y, np.int32)
    # With the model's name and options (its pad id), token ids are passed in groups of one trimmed
    # width, as training trims its batches: the gradients at the real tokens are the same, the
    # padding past each row's width is not computed (its gradient is 0, and `raw` skips it).
    self.model, self.options = model, options or {}
    self.epochs = None if epochs is None else set(int(e) for e in epochs)
    self.normalized: np.ndarray | None = None  # the normalizer is fixed for a run: apply it once
    self.pad_id = pad_id
    self.channel_axis = x.ndim >= 4 and pad_id is None
    self.rows: int | None = None  # examples per call (`pruning.runtime.call_size`)
    self.count = 0
    self.mean: np.ndarray | None = None
    self.m2: np.ndarray | None = None

  def __call__(self, epoch, graphdef, normalizer, params, rest) -> None:
    if self.epochs is not None and epoch not in self.epochs:
      return
    fn = _true_logit_input_grads(
      graphdef, self.channel_axis, sharding.seed_map(params, "unroll"), self.pad_id is not None
    )
    if self.normalized is None:
      self.normalized = normalizer(self.x)
    x: np.ndarray = self.normalized
    if self.rows is None:  # padded calls of one size: one compilation, reusable temporaries
      self.rows = rows_per_call(
        fn,
        lambda rows: (params, rest, np.zeros((rows, *x.shape[1:]), x.dtype), np.zeros(rows, np.int32)),
        most=min(BATCH, len(x)),
      )
    grads = self._gradients(fn, params, rest, x, normalizer)
    if self.mean is None or self.m2 is None:
      self.mean, self.m2 = np.zeros_like(grads), np.zeros_like(grads)
    self.count += 1
    delta = grads - self.mean
    self.mean += delta / self.count
    self.m2 += delta * (grads - self.mean)

  def _gradients(self, fn, params, rest, x: np.ndarray, normalizer) -> np.ndarray:
    """(S, N, ...) input gradients of every row, a padded call of `self.rows` rows at a time."""
    rows: int = self.rows  # type: ignore[assignment]
    groups = (
      [(np.arange(len(x)), None)] if self.model is None else width_groups(self.model, self.options, normalizer, self.x)
    )
    grads: np.ndarray | None = None
    for members, width in width_batches(groups, rows):
      out = np.asarray(fn(params, rest, pad_rows(trimmed(x[members], width), rows), pad_rows(self.y[members], rows)))
      out = out[:, : len(members)].astype(np.float32)
      if grads is None:  # token positions are the axis after the examples: (S, N, L, D)
        full = out.shape[2:] if width is None else (x.shape[-1], *out.shape[3:])
        grads = np.zeros((out.shape[0], len(x), *full), np.float32)
      grads[:, members, : out.shape[2]] = out  # a trimmed row's positions past its width stay 0
    assert grads is not None
    return grads

  def state_dict(self) -> dict:
    """The running statistics (not the data), for resumable training."""
    state: dict = {"count": self.count}
    if self.mean is not None:
      state.update(mean=self.mean, m2=self.m2)
    return state

  def load_state_dict(self, state: dict) -> None:
    self.count = int(state["count"])
    self.mean, self.m2 = state.get("mean"), state.get("m2")

  def results(self) -> dict[str, np.ndarray]:
    """What the VoG scores read after training (`TrainedModels.extras`)."""
    return {"vog_raw": self.raw()}

  def raw(self) -> np.ndarray:
    """(S, N): mean over pixels of the standard deviation over checkpoints."""
    assert self.m2 is not None, "VoG read no checkpoint"
    std = np.sqrt(np.maximum(self.m2, 0.0) / max(self.count, 1), dtype=np.float64)
    if self.pad_id is None:
      return std.reshape(std.shape[0], std.shape[1], -1).mean(axis=-1)
    if std.ndim == 3:  # text under a fully frozen encoder: the pooled state has no token axis
      return std.mean(axis=-1)
    # text: the mean over embedding dimensions, then over each example's real tokens
    ids = self.x[:, 0] if self.x.ndim == 3 else self.x
    real = (np.asarray(ids) != self.pad_id).astype(np.float64)
    per_token = std.mean(axis=-1)  # (S, N, L)
    return (per_token * real).sum(axis=-1) / np.maximum(real.sum(axis=-1), 1.0)


def checkpoint_epochs(num_epochs: int, num_checkpoints: int | None, window: str = "all") -> list[int]:
  """The epochs VoG reads: every epoch of the window (`all` 1..E, `early`
  1..ceil(E/2), `late` floor(E/2)+1..E), or K evenly spaced ones ending at
  the window's last epoch."""
  from pruning.errors import UserError, unknown_name_error

  if window not in WINDOWS:
    raise unknown_name_error("vog_window", str(window), WINDOWS)
  first, last = {"all": (1, num_epochs), "early": (1, -(-num_epochs // 2)), "late": (num_epochs // 2 + 1, num_epochs)}[
    window
  ]
  span = last - first + 1
  if span < 2:
    raise UserError(
      f"VoG's {window!r} window of {num_epochs} proxy epochs holds {span} epoch: a variance needs two"
      f" checkpoints: train the proxies for at least {2 if window == 'all' else 4} epochs"
    )
  if num_checkpoints is None:
    return list(range(first, last + 1))
  if isinstance(num_checkpoints, bool) or not isinstance(num_checkpoints, int) or not 2 <= num_checkpoints <= span:
    raise UserError(
      f"vog_checkpoints {num_checkpoints!r} must be a whole number from 2 to the {span} proxy"
      f" epochs of the {window!r} window (a variance needs two checkpoints)"
    )
  return sorted({first - 1 + int(np.floor(span * i / num_checkpoints + 0.5)) for i in range(1, num_checkpoints + 1)})


def normalize(values: np.ndarray, labels: np.ndarray, how: str) -> np.ndarray:
  """Per seed: `class` z-scores within each class, `dataset` over all, `raw` unchanged."""
  values = np.asarray(values, np.float64)
  if how == "raw":
    return values
  out = np.empty_like(values)
  groups = (
    [np.arange(values.shape[1])] if how == "dataset" else [np.flatnonzero(labels == c) for c in np.unique(labels)]
  )
  for rows in groups:
    part = values[:, rows]
    std = part.std(axis=1, keepdims=True)
    out[:, rows] = (part - part.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
  return out


def _vog(how: str):
  def compute(context: ScoringContext, epoch: int | None) -> np.ndarray:
    # Normalised over the whole split (class statistics), then the scored rows taken.
    return context.recorded(normalize(context.models.extras["vog_raw"], context.split_labels, how))

  return compute


def training_hook(dataset, spec) -> VoGAccumulator:
  """The accumulator proxy training runs after each epoch VoG reads."""
  return VoGAccumulator(
    dataset.train.x,
    dataset.train.y,
    epochs=checkpoint_epochs(spec.training.epochs, spec.vog_checkpoints, spec.vog_window),
    pad_id=int(dataset.tokenizer["pad_id"]) if dataset.tokenizer else None,
    model=spec.model,
    options=spec.model_spec.for_data(dataset).options,  # with the pad id
  )


def _provenance(spec, models) -> dict:
  return {
    "checkpoints": checkpoint_epochs(spec.training.epochs, spec.vog_checkpoints, spec.vog_window),
    "window": spec.vog_window,
  }


def _check(spec) -> None:
  checkpoint_epochs(spec.training.epochs, spec.vog_checkpoints, spec.vog_window)


for _name, _how, _text in (
  ("vog", "class", "VoG, normalised within each class (the paper's)"),
  ("vog_dataset", "dataset", "VoG, normalised over the dataset"),
  ("vog_raw", "raw", "VoG, unnormalised"),
):
  register_score(
    _name,
    harder=HARDER_HIGHER,
    at_checkpoint=False,
    training_hook=training_hook,
    provenance=_provenance,
    check=_check,
    description=_text,
    reference="Agarwal et al., CVPR 2022",
  )(_vog(_how))
