"""Pretrained BERT-family encoders from a local Hugging Face checkpoint folder.

`bert` reads `config.json` and `model.safetensors` (with the `safetensors`
library: never a pickle) from the folder given as `checkpoint`, builds the
`transformer` encoder with the checkpoint's sizes and copies every weight in:
embeddings (word, position, token type, LayerNorm), each layer's query, key,
value and output projections, feed-forward and LayerNorms, and the pooler.
PyTorch's `Linear.weight` is (out, in); NNX's kernel is (in, out), so it is
transposed. The classification head is new (one per seed). Nothing is
downloaded: the user points at a folder (`save_pretrained` writes one).
`tests/test_pretrained.py` proves the mapping on a randomly initialised
BERT built with `transformers`: hidden states agree to float32 tolerance.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from pruning.errors import UserError
from pruning.models.transformer import ACTIVATIONS, Transformer

KNOWN_TYPES = ("bert",)


def read_config(folder: str) -> dict:
  """`config.json` of a BERT-family checkpoint folder, checked."""
  if not folder:
    raise UserError("model 'bert' needs a checkpoint folder: --model-option checkpoint=PATH (config.json and weights)")
  path = Path(folder) / "config.json"
  if not Path(folder).is_dir():
    raise UserError(f"checkpoint {folder!r} is not a folder: give the folder holding config.json and model.safetensors")
  if not path.is_file():
    raise UserError(
      f"checkpoint {folder!r} has no config.json: give a Hugging Face checkpoint folder (save_pretrained)"
    )
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except (ValueError, UnicodeDecodeError):
    raise UserError(f"{path}: not valid JSON: write the checkpoint's config again") from None
  if not isinstance(config, dict):
    raise UserError(f"{path}: not a JSON object: write the checkpoint's config again")
  model_type = config.get("model_type")
  if model_type not in KNOWN_TYPES:
    architectures = ", ".join(config.get("architectures") or []) or "none given"
    raise UserError(
      f"checkpoint {folder!r} is a {model_type!r} model (architectures: {architectures}); the weight mapping knows"
      f" {', '.join(KNOWN_TYPES)}: use a BERT-family checkpoint, or --model transformer to train from scratch"
    )
  if config.get("position_embedding_type", "absolute") != "absolute":
    raise UserError(
      f"checkpoint {folder!r} uses {config['position_embedding_type']!r} positions; only absolute ones map"
    )
  if config.get("hidden_act", "gelu") not in ACTIVATIONS:
    raise UserError(f"checkpoint {folder!r} uses activation {config['hidden_act']!r}; known: {', '.join(ACTIVATIONS)}")
  return config


@functools.lru_cache(maxsize=2)
def _read_weights(path: str, mtime: float, size: int) -> dict[str, np.ndarray]:
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  try:
    return {name: np.asarray(value, np.float32) for name, value in load_file(path).items()}
  except (SafetensorError, OSError, ValueError) as error:
    raise UserError(f"{path}: not a readable safetensors file ({str(error)[:100]}): save the weights again") from None


def read_weights(folder: str) -> dict[str, np.ndarray]:
  """The checkpoint's tensors as float32 arrays, names without a `bert.` prefix."""
  path = Path(folder) / "model.safetensors"
  if not path.is_file():
    pickled = [name for name in ("pytorch_model.bin", "tf_model.h5") if (Path(folder) / name).is_file()]
    hint = (
      f" ({pickled[0]} is there, which is not read: pickles can run code);"
      " save it as safetensors (model.save_pretrained(folder, safe_serialization=True))"
      if pickled
      else ": give the folder holding the weights"
    )
    raise UserError(f"checkpoint {folder!r} has no model.safetensors{hint}")
  stat = os.stat(path)
  tensors = _read_weights(str(path.resolve()), stat.st_mtime, stat.st_size)
  prefix = next(
    (
      n[: -len("embeddings.word_embeddings.weight")] for n in tensors if n.endswith("embeddings.word_embeddings.weight")
    ),
    None,
  )
  if prefix is None:
    raise UserError(
      f"checkpoint {folder!r}: model.safetensors holds no embeddings.word_embeddings.weight: not a BERT encoder"
    )
  return {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}


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
    freeze_encoder: bool = False,
  ):
    config = read_config(checkpoint)
    weights = read_weights(checkpoint)
    rows = int(config.get("vocab_size") or weights["embeddings.word_embeddings.weight"].shape[0])
    if vocab_size and vocab_size != rows:
      raise UserError(
        f"the tokenizer has {vocab_size} tokens but checkpoint {checkpoint!r} has {rows} embeddings:"
        f" use the checkpoint's own tokenizer (--tokenizer {checkpoint})"
      )
    positions = int(config.get("max_position_embeddings", 512))
    if int(input_shape[-1]) > positions:
      raise UserError(
        f"max_length {int(input_shape[-1])} is above checkpoint {checkpoint!r}'s {positions} position embeddings:"
        f" lower max_length to {positions} (--max-length, or dataset.max_length in YAML)"
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
    )
    self._load(weights, checkpoint)
    if freeze_encoder:
      self.freeze_encoder()

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
    if "pooler.dense.weight" in weights:  # a checkpoint saved without its pooler keeps the random one
      dense(self.pooler, "pooler.dense")
