"""A BERT-style transformer encoder for token ids (Flax NNX).

Inputs are the token ids `pruning.data.text` makes, as float32: (B, L), or
(B, 2, L) ids and token types for sentence pairs. Padding (`pad_id`) is
masked out of attention. Devlin et al.'s encoder (post-LayerNorm):

    h0 = LayerNorm(E_tok[ids] + E_pos[0..L-1] + E_type[types])
    a  = LayerNorm(h + W_o softmax(Q K^T / sqrt(d_head) + mask) V)
    h' = LayerNorm(a + W_2 gelu(W_1 a))
    pooled = tanh(W_p h_L[CLS]);  logits = head(pooled)

Every parameter lives in an `nnx.Linear`, `nnx.Embed` or `nnx.LayerNorm`,
each called once per forward pass, so exact GraNd takes the ghost-norm path
(`pruning.scores.ghost_norms`) through attention, feed-forward, embeddings
and LayerNorms. There is no dropout: per-example scores are defined.

`pooling`: `cls` (BERT's: tanh(W_p h_L[CLS]), as above) or `mean` (the
mean of h_L over real tokens, no pooler: what sentence-transformers
checkpoints such as all-MiniLM-L6-v2 are trained for).

`freeze_layers: K` holds the embeddings and the first K blocks as `Frozen`
variables, not `nnx.Param`: training, weight decay and GraNd see only the
blocks above, the pooler and the head. `all` (or `freeze_encoder`) freezes
every block. The frozen part's output is then the first trainable input:
`token_embeddings(x)` returns it and `__call__(x, token_embeddings=...)`
continues from it, so VoG differentiates what is trained (with K = 0, the
token embeddings E_tok[ids], Anand et al., 2023). `keep_top()` drops the
frozen part: the model then reads that output, computed once for every
example (`pruning.training.frozen`), instead of token ids.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from pruning.errors import UserError

ACTIVATIONS = {
  "gelu": lambda x: jax.nn.gelu(x, approximate=False),
  "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
  "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
  "relu": jax.nn.relu,
}


POOLINGS = ("cls", "mean")


class Frozen(nnx.Variable):
  """A weight that is not trained (`freeze_layers`)."""


def token_inputs(x, pad_id: int):
  """(ids, types, mask) from a float batch (B, L) or (B, 2, L)."""
  x = jnp.asarray(x)
  if x.ndim == 3:
    ids, types = x[:, 0], x[:, 1]
  else:
    ids, types = x, jnp.zeros_like(x)
  ids, types = ids.astype(jnp.int32), types.astype(jnp.int32)
  return ids, types, ids != pad_id


def pack_states(h, mask):
  """(B, L, D) hidden states and (B, L) mask as one (B, D + 1, L) array:
  positions last, so a batch is trimmed to its longest example as token ids
  are (`pruning.training.buckets`)."""
  return jnp.concatenate([h.transpose(0, 2, 1), mask[:, None, :].astype(h.dtype)], axis=1)


def unpack_states(x):
  """The inverse of `pack_states`."""
  x = jnp.asarray(x)
  return x[:, :-1, :].transpose(0, 2, 1), x[:, -1, :] > 0.5


def frozen_depth(freeze_layers, freeze_encoder: bool, layers: int) -> int:
  """The number of frozen blocks `freeze_layers` (0..layers or `all`) and `freeze_encoder` ask for."""
  check_freeze_layers(freeze_layers)
  if freeze_layers == "all":
    return layers
  if freeze_layers > layers:
    raise UserError(f"freeze_layers {freeze_layers} is beyond the model's {layers} blocks: give 0..{layers}, or 'all'")
  if freeze_encoder:
    if freeze_layers not in (0, layers):
      raise UserError(f"freeze_encoder and freeze_layers {freeze_layers} disagree: give one of them")
    return layers
  return freeze_layers


def check_freeze_layers(value) -> None:
  """The model-option check of `freeze_layers` (its bound is the model's depth, checked when built)."""
  if value != "all" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
    raise UserError(f"model option freeze_layers must be a whole number of blocks or 'all', got {value!r}")


class EncoderLayer(nnx.Module):
  def __init__(self, hidden: int, heads: int, mlp: int, *, activation: str, eps: float, rngs: nnx.Rngs):
    self.heads = heads
    self.query = nnx.Linear(hidden, hidden, rngs=rngs)
    self.key = nnx.Linear(hidden, hidden, rngs=rngs)
    self.value = nnx.Linear(hidden, hidden, rngs=rngs)
    self.attention_output = nnx.Linear(hidden, hidden, rngs=rngs)
    self.attention_norm = nnx.LayerNorm(hidden, epsilon=eps, rngs=rngs)
    self.intermediate = nnx.Linear(hidden, mlp, rngs=rngs)
    self.output = nnx.Linear(mlp, hidden, rngs=rngs)
    self.output_norm = nnx.LayerNorm(hidden, epsilon=eps, rngs=rngs)
    self.activation = activation

  def __call__(self, h, mask):
    batch, length, hidden = h.shape
    head_size = hidden // self.heads

    def split(t):  # (B, L, H*D) -> (B, H, L, D): batch axes first, as XLA's CPU matmuls want them
      return t.reshape(batch, length, self.heads, head_size).transpose(0, 2, 1, 3)

    q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
    logits = jnp.matmul(q, k.transpose(0, 1, 3, 2)) / math.sqrt(head_size)
    # A large negative number, not -inf: a row of padding stays finite.
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    context = jnp.matmul(weights, v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    a = self.attention_norm(h + self.attention_output(context))
    return self.output_norm(a + self.output(ACTIVATIONS[self.activation](self.intermediate(a))))


class Transformer(nnx.Module):
  """BERT-style encoder: `hidden` width, `layers`, `heads`, `mlp` width, pooled [CLS] head."""

  # Options beyond a layer width (`pruning.models.validate_model_options`).
  OPTION_LIMITS = {"vocab_size": (2, 1 << 24), "pad_id": (0, 1 << 24), "max_positions": (1, 1 << 16)}
  OPTION_CHECKS = {"freeze_layers": check_freeze_layers}

  def __init__(
    self,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    vocab_size: int = 8192,
    pad_id: int = 0,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    mlp: int = 512,
    max_positions: int = 512,
    type_vocab_size: int = 2,
    activation: str = "gelu",
    layer_norm_eps: float = 1e-12,
    pooling: str = "cls",
    freeze_layers: int | str = 0,
    freeze_encoder: bool = False,
  ):
    length = int(input_shape[-1])
    if len(input_shape) not in (1, 2) or (len(input_shape) == 2 and input_shape[0] != 2):
      raise UserError(
        f"model 'transformer' reads token ids (L,) or pairs (2, L), not inputs of shape {tuple(input_shape)}:"
        " give text data (a text column) or choose another model"
      )
    if length > max_positions:
      raise UserError(
        f"max_length {length} is above the model's {max_positions} positions: lower max_length to"
        f" {max_positions} (--max-length, or dataset.max_length in YAML)"
      )
    if hidden % heads:
      raise UserError(f"hidden width {hidden} is not a multiple of heads {heads}: choose widths that divide")
    if activation not in ACTIVATIONS:
      raise UserError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    if not 0 <= pad_id < vocab_size:
      raise UserError(f"pad_id {pad_id} is outside the vocabulary of {vocab_size}")
    if pooling not in POOLINGS:
      raise UserError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    self.pad_id = pad_id
    self.position_offset = 0  # RoBERTa's positions start after its padding id (`pruning.models.layouts`)
    self.type_vocab_size = type_vocab_size
    self.pooling = pooling
    self.num_blocks = layers
    self.frozen_layers = frozen_depth(freeze_layers, freeze_encoder, layers)
    self.cached_input = False  # True after keep_top(): inputs are the frozen part's outputs
    self.word_embeddings = nnx.Embed(vocab_size, hidden, rngs=rngs)
    self.position_embeddings = nnx.Embed(max_positions, hidden, rngs=rngs)
    self.token_type_embeddings = nnx.Embed(type_vocab_size, hidden, rngs=rngs)
    self.embedding_norm = nnx.LayerNorm(hidden, epsilon=layer_norm_eps, rngs=rngs)
    self.layers = nnx.List(
      [EncoderLayer(hidden, heads, mlp, activation=activation, eps=layer_norm_eps, rngs=rngs) for _ in range(layers)]
    )
    # Mean pooling has no pooler: a parameter no forward pass reads would have no gradient to score.
    self.pooler = nnx.Linear(hidden, hidden, rngs=rngs) if pooling == "cls" else None
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)
    self.freeze_bottom()  # a subclass loading weights writes them into the frozen variables as well

  def freeze_bottom(self) -> None:
    """Holds the embeddings and the first `frozen_layers` blocks as `Frozen` variables (not trained)."""
    if not self.frozen_layers:
      return
    modules = [self.word_embeddings, self.position_embeddings, self.token_type_embeddings, self.embedding_norm]
    for layer in list(self.layers)[: self.frozen_layers]:
      modules.extend(module for _, module in nnx.iter_modules(layer) if module is not layer)
    for module in modules:
      for name in ("kernel", "bias", "embedding", "scale"):
        variable = getattr(module, name, None)
        if isinstance(variable, nnx.Param):
          setattr(module, name, Frozen(variable[...]))

  @property
  def pools_frozen(self) -> bool:
    """Every block is frozen: the frozen part's output is the pooled (B, hidden) state."""
    return self.frozen_layers == self.num_blocks

  def keep_top(self) -> None:
    """Drops the embeddings and frozen blocks: the model then reads what
    `frozen_output` computes ((B, hidden + 1, L) packed states, or (B, hidden)
    pooled ones when every block is frozen) instead of token ids."""
    if not self.frozen_layers or self.cached_input:
      raise ValueError("keep_top needs frozen blocks, once")
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "embedding_norm"):
      setattr(self, name, None)
    self.layers = nnx.List(list(self.layers)[self.frozen_layers :])
    self.cached_input = True

  def _embed(self, ids, types, words=None):
    batch, length = ids.shape
    words = self.word_embeddings(ids) if words is None else words
    positions = self.position_embeddings(jnp.broadcast_to(jnp.arange(length) + self.position_offset, (batch, length)))
    if self.type_vocab_size == 1:  # one token type (RoBERTa, DistilBERT): a pair's second segment is type 0 too
      types = jnp.zeros_like(types)
    return self.embedding_norm(words + positions + self.token_type_embeddings(types))

  def _pool(self, h, mask):
    """(B, L, hidden) -> (B, hidden): the [CLS] state, or the mean over real tokens."""
    if self.pooling == "mean":
      weights = mask[..., None].astype(h.dtype)
      return jnp.sum(h * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    return h[:, 0]

  def _trainable_layers(self):
    return list(self.layers) if self.cached_input else list(self.layers)[self.frozen_layers :]

  def frozen_output(self, x):
    """The frozen part's output for token inputs `x`, as the top reads it
    (see `keep_top`): what is computed once per example and cached."""
    ids, types, mask = token_inputs(x, self.pad_id)
    h = self._embed(ids, types)
    for layer in list(self.layers)[: self.frozen_layers]:
      h = layer(h, mask)
    return self._pool(h, mask) if self.pools_frozen else pack_states(h, mask)

  def _trainable_input(self, x):
    """(first trainable input, mask) of a batch: token ids or cached states."""
    if not self.cached_input:
      x = self.frozen_output(x)
    if self.pools_frozen:
      return x, None
    return unpack_states(x)

  def token_embeddings(self, x):
    """The first trainable input, what VoG differentiates: E_tok[ids] (B, L,
    hidden) with nothing frozen, else the frozen part's output (B, L, hidden),
    or (B, hidden) when every block is frozen."""
    if not self.frozen_layers:
      ids, _, _ = token_inputs(x, self.pad_id)
      return self.word_embeddings(ids)
    return self._trainable_input(x)[0]

  def encode(self, x, token_embeddings=None):
    """The last layer's hidden states (B, L, hidden), and the attention mask (not when every block is frozen)."""
    if not self.frozen_layers:
      ids, types, mask = token_inputs(x, self.pad_id)
      h = self._embed(ids, types, words=token_embeddings)
    else:
      h, mask = self._trainable_input(x) if token_embeddings is None else (token_embeddings, self._mask(x))
    for layer in self._trainable_layers():
      h = layer(h, mask)
    return h, mask

  def _mask(self, x):
    if self.cached_input:
      return None if self.pools_frozen else jnp.asarray(x)[:, -1, :] > 0.5
    return token_inputs(x, self.pad_id)[2]

  def features(self, x, token_embeddings=None):
    """The head's input: tanh(W_p h[CLS]) (`cls`) or the mean of h over real tokens (`mean`)."""
    h, mask = self.encode(x, token_embeddings)
    pooled = h if self.pools_frozen else self._pool(h, mask)
    return pooled if self.pooler is None else jnp.tanh(self.pooler(pooled))

  def __call__(self, x, token_embeddings=None):
    return self.head(self.features(x, token_embeddings))
