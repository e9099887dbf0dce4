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
import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from pruning.errors import UserError
from pruning.models.transformer import ACTIVATIONS, Transformer
from pruning.runtime.atomic import file_digest

KNOWN_TYPES = ("bert",)
# The largest encoders in use have 24-48 layers; far more is a mistake, and
# tracing the model costs more than linear time in its depth.
MAX_LAYERS = 64
CONFIG_SIZES = {
  "hidden_size": (1, 1 << 16),
  "num_hidden_layers": (1, MAX_LAYERS),
  "num_attention_heads": (1, 1 << 10),
  "intermediate_size": (1, 1 << 18),
  "max_position_embeddings": (1, 1 << 16),
  "type_vocab_size": (1, 1 << 10),
  "vocab_size": (2, 1 << 24),
}
OPTIONAL_SIZES = ("max_position_embeddings", "type_vocab_size", "vocab_size")
OPTIONAL_TENSORS = ("pooler.dense.weight", "pooler.dense.bias")  # absent: the pooler stays random
INDEX_BUFFERS = re.compile(r"(.*\.)?embeddings\.(position_ids|token_type_ids)$")
# Heads a BERT checkpoint may carry that a new classification head replaces.
KNOWN_UNUSED = re.compile(r"(cls\.predictions\.|cls\.seq_relationship\.|classifier\.|(.*\.)?embeddings\.position_ids$)")


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
  for key, (low, high) in CONFIG_SIZES.items():
    if key not in config and key in OPTIONAL_SIZES:
      continue
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
      raise UserError(f"{path}: {key} is {value!r}, not a whole number in {low}..{high}: fix the checkpoint's config")
  if config["hidden_size"] % config["num_attention_heads"]:
    raise UserError(
      f"{path}: hidden_size {config['hidden_size']} is not a multiple of num_attention_heads"
      f" {config['num_attention_heads']}: fix the checkpoint's config"
    )
  eps = config.get("layer_norm_eps", 1e-12)
  if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:  # NaN and inf fail too
    raise UserError(f"{path}: layer_norm_eps is {eps!r}, not a small positive number such as 1e-12")
  return config


def expected_tensors(config: dict, vocab_rows: int) -> dict[str, tuple[int, ...]]:
  """Every tensor a BERT encoder of this config has, with its (PyTorch) shape;
  the pooler's are optional (`OPTIONAL_TENSORS`)."""
  h, i = config["hidden_size"], config["intermediate_size"]
  positions, types = config.get("max_position_embeddings", 512), config.get("type_vocab_size", 2)
  shapes = {
    "embeddings.word_embeddings.weight": (vocab_rows, h),
    "embeddings.position_embeddings.weight": (positions, h),
    "embeddings.token_type_embeddings.weight": (types, h),
    "embeddings.LayerNorm.weight": (h,),
    "embeddings.LayerNorm.bias": (h,),
    "pooler.dense.weight": (h, h),
    "pooler.dense.bias": (h,),
  }
  for layer in range(config["num_hidden_layers"]):
    base = f"encoder.layer.{layer}"
    for name, (out, inp) in {
      "attention.self.query": (h, h),
      "attention.self.key": (h, h),
      "attention.self.value": (h, h),
      "attention.output.dense": (h, h),
      "intermediate.dense": (i, h),
      "output.dense": (h, i),
    }.items():
      shapes[f"{base}.{name}.weight"] = (out, inp)
      shapes[f"{base}.{name}.bias"] = (out,)
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes[f"{base}.{norm}.weight"] = (h,)
      shapes[f"{base}.{norm}.bias"] = (h,)
  return shapes


def check_tensors(weights: dict[str, np.ndarray], others: list[str], config: dict, folder: str) -> list[str]:
  """Compares the checkpoint's tensors with what its config describes, before
  anything is built: a missing tensor, a wrong shape or a tensor nothing maps
  (a second layer under a config saying one) is refused. Returns the known
  heads this encoder does not use (pre-training and classification heads)."""
  rows = int(config.get("vocab_size") or weights["embeddings.word_embeddings.weight"].shape[0])
  expected = expected_tensors(config, rows)
  aliases = {n.replace(".weight", ".gamma").replace(".bias", ".beta"): n for n in expected if "LayerNorm" in n}
  found = {aliases.get(name, name): name for name in weights}
  for name, shape in expected.items():
    if name not in found:
      if name in OPTIONAL_TENSORS:
        continue
      raise UserError(f"checkpoint {folder!r}: model.safetensors lacks {name}: not a complete BERT encoder")
    actual = tuple(weights[found[name]].shape)
    if actual != shape:
      raise UserError(
        f"checkpoint {folder!r}: {name} has shape {actual}, config.json implies {shape}: the config and the"
        " weights disagree"
      )
  unused = [name for name in [*weights, *others] if aliases.get(name, name) not in expected]
  known = [name for name in unused if KNOWN_UNUSED.match(name)]
  unknown = [name for name in unused if not KNOWN_UNUSED.match(name)]
  if unknown:
    layers = config["num_hidden_layers"]
    raise UserError(
      f"checkpoint {folder!r}: model.safetensors holds {len(unknown)} tensor{'s' if len(unknown) > 1 else ''} that"
      f" config.json does not describe ({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}; the config"
      f" says {layers} layer{'s' if layers > 1 else ''} of width {config['hidden_size']}): fix config.json or the"
      " weights"
    )
  return known


def checkpoint_digest(folder: str) -> str:
  """The SHA-256 of a checkpoint's config.json and model.safetensors, as recorded in a manifest."""
  digest = hashlib.sha256()
  for name in ("config.json", "model.safetensors"):
    path = Path(folder) / name
    stat = os.stat(path)
    digest.update(name.encode())
    digest.update(_file_sha256(str(path.resolve()), stat.st_mtime, stat.st_size).encode())
  return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime: float, size: int) -> str:
  """`file_digest`, once per version of a file (a checkpoint is hashed for every manifest that names it)."""
  return file_digest(path)


def checkpoint_record(model: str, options: dict) -> dict:
  """What a manifest records of a pretrained model's checkpoint: its digest
  (`--from-manifest` and `check` refuse changed weights)."""
  folder = (options or {}).get("checkpoint")
  if model != "bert" or not folder:
    return {}
  try:
    return {"checkpoint_sha256": checkpoint_digest(str(folder))}
  except OSError:
    return {}


@functools.lru_cache(maxsize=2)
def _read_weights(path: str, mtime: float, size: int) -> dict[str, np.ndarray]:
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  try:
    tensors = load_file(path)
  except (SafetensorError, OSError, ValueError, TypeError) as error:
    raise UserError(f"{path}: not a readable safetensors file ({str(error)[:100]}): save the weights again") from None
  except AttributeError as error:  # a dtype numpy does not know (float8_*): the library asks numpy for it by name
    raise UserError(
      f"{path}: holds weights of a type numpy cannot read ({str(error)[-40:]}): save them as float32 or float16"
    ) from None
  converted = {}
  for name, value in tensors.items():
    if value.dtype.kind in "iu" and INDEX_BUFFERS.match(name):
      continue  # position and token-type ids saved beside the weights (buffers, not weights)
    if value.dtype.kind != "f":
      raise UserError(f"{path}: tensor {name} holds {value.dtype}, not floating point weights: save the weights again")
    converted[name] = np.asarray(value, np.float32)
    if not np.all(np.isfinite(converted[name])):
      raise UserError(f"{path}: tensor {name} holds NaN or infinite values: the weights are damaged")
  return converted


def read_weights(folder: str) -> tuple[dict[str, np.ndarray], list[str]]:
  """The checkpoint's encoder tensors as float32 arrays, names without a
  `bert.` prefix, and the names of its other tensors (heads)."""
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
  encoder = {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
  return encoder, [name for name in tensors if not name.startswith(prefix)]


def checkpoint_pooling(folder: str) -> str:
  """The pooling a sentence-transformers folder was trained with (its `1_Pooling/config.json`), else `cls`."""
  path = Path(folder) / "1_Pooling" / "config.json"
  if not path.is_file():
    return "cls"
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except (ValueError, UnicodeDecodeError):
    raise UserError(f"{path}: not valid JSON: fix it, or give --model-option pooling=cls or mean") from None
  if isinstance(config, dict) and config.get("pooling_mode_mean_tokens"):
    return "mean"
  if isinstance(config, dict) and config.get("pooling_mode_cls_token"):
    return "cls"
  raise UserError(f"{path}: a pooling other than cls or mean tokens: give --model-option pooling=cls or mean")


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
    weights, others = read_weights(checkpoint)
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
      pooling=checkpoint_pooling(checkpoint) if pooling == "auto" else pooling,
      freeze_layers=freeze_layers,
      freeze_encoder=freeze_encoder,
    )
    # The frozen part is the checkpoint's, the same for every seed: computed once and cached.
    self.shared_frozen_part = bool(cache_frozen)
    self.checkpoint = checkpoint
    self._load(weights, checkpoint)

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


def changed_checkpoint(model_record: dict) -> str | None:
  """Why a manifest's recorded checkpoint no longer matches its folder (None: it does, or none is recorded)."""
  recorded = (model_record or {}).get("checkpoint_sha256")
  folder = ((model_record or {}).get("options") or {}).get("checkpoint")
  if not recorded or not folder:
    return None
  try:
    current = checkpoint_digest(str(folder))
  except OSError:
    return f"checkpoint {folder!r} is gone (the manifest was made with SHA-256 {recorded[:12]})"
  if current != recorded:
    return (
      f"checkpoint {folder!r} changed since the manifest was made (SHA-256 {current[:12]}, recorded"
      f" {recorded[:12]}): restore the weights it was made with"
    )
  return None
