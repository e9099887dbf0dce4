"""Pretrained BERT-family encoders from a local Hugging Face checkpoint folder.

`bert` reads `config.json` and `model.safetensors` (with the `safetensors`
library: never a pickle) from the folder given as `checkpoint`, builds the
`transformer` encoder with the checkpoint's sizes and copies every weight in:
embeddings (word, position, token type, LayerNorm), each layer's query, key,
value and output projections, feed-forward and LayerNorms, and the pooler.
PyTorch's `Linear.weight` is (out, in); NNX's kernel is (in, out), so it is
transposed. The classification head is new (one per seed). Nothing is
downloaded: the user points at a folder (`save_pretrained` writes one).
`tests/test_pretrained.py` proves the mapping on randomly initialised
models built with `transformers`: hidden states agree to float32 tolerance.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from flax import nnx

from pruning.errors import UserError
from pruning.models.checkpoints import (
  changed_checkpoint,
  check_tensors,
  checkpoint_digest,
  checkpoint_pooling,
  checkpoint_record,
  expected_tensors,
  read_config,
  read_weights,
)
from pruning.models.layouts import has_token_types, position_offset
from pruning.models.transformer import Frozen, Transformer


def _norm_names(name: str) -> tuple[str, str]:
  return (f"{name}.weight", f"{name}.bias")


class Bert(Transformer):
  """A pretrained BERT-family encoder from a local checkpoint folder (`checkpoint=PATH`)."""

  OPTION_LIMITS = {"vocab_size": (0, 1 << 24), "pad_id": (0, 1 << 24)}

  def __init__(
    self,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    checkpoint: str = "",
    vocab_size: int = 0,
    pad_id: int = 0,
    pooling: str = "auto",
    freeze_layers: int | str = 0,
    freeze_encoder: bool = False,
    cache_frozen: bool = True,
  ):
    config = read_config(checkpoint)
    weights, others = read_weights(checkpoint, config["model_type"])
    unused = check_tensors(weights, others, config, checkpoint)
    if unused:
      heads = sorted({".".join(name.split(".")[:2]) + ".*" for name in unused})
      warnings.warn(
        f"checkpoint {checkpoint!r}: not used (a new head is trained): {', '.join(heads)}", UserWarning, stacklevel=2
      )
    rows = int(config.get("vocab_size") or weights["embeddings.word_embeddings.weight"].shape[0])
    if vocab_size and vocab_size != rows:
      raise UserError(
        f"the tokenizer has {vocab_size} tokens but checkpoint {checkpoint!r} has {rows} embeddings:"
        f" use the checkpoint's own tokenizer (--tokenizer {checkpoint})"
      )
    positions = int(config.get("max_position_embeddings", 512))
    offset = position_offset(config)
    if int(input_shape[-1]) + offset > positions:
      raise UserError(
        f"max_length {int(input_shape[-1])} is above checkpoint {checkpoint!r}'s {positions - offset} positions:"
        f" lower max_length to {positions - offset} (--max-length, or dataset.max_length in YAML)"
      )
    super().__init__(
      input_shape=input_shape,
      num_classes=num_classes,
      rngs=rngs,
      vocab_size=rows,
      pad_id=pad_id,
      hidden=int(config["hidden_size"]),
      layers=int(config["num_hidden_layers"]),
      heads=int(config["num_attention_heads"]),
      mlp=int(config["intermediate_size"]),
      max_positions=positions,
      type_vocab_size=int(config.get("type_vocab_size", 2)),
      activation=config.get("hidden_act", "gelu"),
      layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
      pooling=checkpoint_pooling(checkpoint) if pooling == "auto" else pooling,
      freeze_layers=freeze_layers,
      freeze_encoder=freeze_encoder,
    )
    # The frozen part is the checkpoint's, the same for every seed: computed once and cached.
    self.shared_frozen_part = bool(cache_frozen)
    self.checkpoint = checkpoint
    self.position_offset = offset
    self._load(weights, checkpoint)
    if not has_token_types(config):  # DistilBERT: no token types; the one type's embedding stays zero
      embeddings: Any = self.token_type_embeddings  # its variable becomes a Frozen one, not a Param
      embeddings.embedding = Frozen(np.zeros_like(embeddings.embedding[...]))

  def frozen_fingerprint(self) -> dict:
    """What the frozen part's output depends on besides the token ids (`pruning.training.frozen`)."""
    return {
      "checkpoint_sha256": checkpoint_digest(self.checkpoint),
      "frozen_layers": self.frozen_layers,
      "pooled": self.pooling if self.pools_frozen else None,
    }

  def _load(self, weights: dict[str, np.ndarray], checkpoint: str) -> None:
    def take(name: str, shape: tuple[int, ...], transpose: bool = False) -> np.ndarray:
      if name not in weights:
        raise UserError(f"checkpoint {checkpoint!r}: model.safetensors lacks {name}: not a complete BERT encoder")
      value = weights[name].T if transpose else weights[name]
      if value.shape != shape:
        raise UserError(f"checkpoint {checkpoint!r}: {name} has shape {value.shape}, config.json implies {shape}")
      return value

    def norm(module: Any, name: str) -> None:
      scale, bias = _norm_names(name)
      if scale not in weights and f"{name}.gamma" in weights:  # TensorFlow-era names
        scale, bias = f"{name}.gamma", f"{name}.beta"
      module.scale[...] = take(scale, module.scale.shape)
      module.bias[...] = take(bias, module.bias.shape)

    def dense(module: Any, name: str) -> None:
      module.kernel[...] = take(f"{name}.weight", module.kernel.shape, transpose=True)
      module.bias[...] = take(f"{name}.bias", module.bias.shape)

    for module, name in (
      (self.word_embeddings, "word_embeddings"),
      (self.position_embeddings, "position_embeddings"),
      (self.token_type_embeddings, "token_type_embeddings"),
    ):
      if f"embeddings.{name}.weight" in weights or name != "token_type_embeddings":  # DistilBERT has none
        module.embedding[...] = take(f"embeddings.{name}.weight", module.embedding.shape)
    norm(self.embedding_norm, "embeddings.LayerNorm")
    for i, layer in enumerate(self.layers):
      base = f"encoder.layer.{i}"
      dense(layer.query, f"{base}.attention.self.query")
      dense(layer.key, f"{base}.attention.self.key")
      dense(layer.value, f"{base}.attention.self.value")
      dense(layer.attention_output, f"{base}.attention.output.dense")
      norm(layer.attention_norm, f"{base}.attention.output.LayerNorm")
      dense(layer.intermediate, f"{base}.intermediate.dense")
      dense(layer.output, f"{base}.output.dense")
      norm(layer.output_norm, f"{base}.output.LayerNorm")
    # A checkpoint saved without its pooler keeps the random one; mean pooling has none.
    if "pooler.dense.weight" in weights and self.pooler is not None:
      dense(self.pooler, "pooler.dense")


__all__ = [
  "Bert",
  "changed_checkpoint",
  "checkpoint_digest",
  "checkpoint_record",
  "expected_tensors",
  "read_config",
  "read_weights",
]
