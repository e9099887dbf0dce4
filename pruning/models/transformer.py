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

`token_embeddings(x)` and `__call__(x, token_embeddings=...)` expose the
input embeddings, what VoG on text differentiates (Anand et al., 2023).
With `freeze_encoder`, the encoder's weights are held as `Frozen` variables,
not `nnx.Param`: training, weight decay and GraNd see only the pooler and
the head (a cheap proxy on a pretrained encoder).
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


class Frozen(nnx.Variable):
  """A weight that is not trained (`freeze_encoder`)."""


def token_inputs(x, pad_id: int):
  """(ids, types, mask) from a float batch (B, L) or (B, 2, L)."""
  x = jnp.asarray(x)
  if x.ndim == 3:
    ids, types = x[:, 0], x[:, 1]
  else:
    ids, types = x, jnp.zeros_like(x)
  ids, types = ids.astype(jnp.int32), types.astype(jnp.int32)
  return ids, types, ids != pad_id


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
    self.pad_id = pad_id
    self.word_embeddings = nnx.Embed(vocab_size, hidden, rngs=rngs)
    self.position_embeddings = nnx.Embed(max_positions, hidden, rngs=rngs)
    self.token_type_embeddings = nnx.Embed(type_vocab_size, hidden, rngs=rngs)
    self.embedding_norm = nnx.LayerNorm(hidden, epsilon=layer_norm_eps, rngs=rngs)
    self.layers = nnx.List(
      [EncoderLayer(hidden, heads, mlp, activation=activation, eps=layer_norm_eps, rngs=rngs) for _ in range(layers)]
    )
    self.pooler = nnx.Linear(hidden, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)
    if freeze_encoder:
      self.freeze_encoder()

  def freeze_encoder(self) -> None:
    """Holds the embeddings and encoder layers as `Frozen` variables (not trained)."""
    modules = [self.word_embeddings, self.position_embeddings, self.token_type_embeddings, self.embedding_norm]
    for layer in self.layers:
      modules.extend(module for _, module in nnx.iter_modules(layer) if module is not layer)
    for module in modules:
      for name in ("kernel", "bias", "embedding", "scale"):
        variable = getattr(module, name, None)
        if isinstance(variable, nnx.Param):
          setattr(module, name, Frozen(variable[...]))

  def token_embeddings(self, x):
    """E_tok[ids]: (B, L, hidden), the input embeddings VoG differentiates."""
    ids, _, _ = token_inputs(x, self.pad_id)
    return self.word_embeddings(ids)

  def encode(self, x, token_embeddings=None):
    """The last layer's hidden states (B, L, hidden), and the attention mask."""
    ids, types, mask = token_inputs(x, self.pad_id)
    batch, length = ids.shape
    words = self.word_embeddings(ids) if token_embeddings is None else token_embeddings
    positions = self.position_embeddings(jnp.broadcast_to(jnp.arange(length), (batch, length)))
    h = self.embedding_norm(words + positions + self.token_type_embeddings(types))
    for layer in self.layers:
      h = layer(h, mask)
    return h, mask

  def features(self, x, token_embeddings=None):
    """The head's input: tanh(W_p h[CLS])."""
    h, _ = self.encode(x, token_embeddings)
    return jnp.tanh(self.pooler(h[:, 0]))

  def __call__(self, x, token_embeddings=None):
    return self.head(self.features(x, token_embeddings))
