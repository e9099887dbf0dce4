"""Hugging Face checkpoint folders of BERT-family encoders: config, weights, digest.

`read_config` checks `config.json`; `read_weights` reads `model.safetensors`
with the `safetensors` library (never a pickle) as float32 arrays;
`check_tensors` compares the two before anything is built. Tensor names are
BERT's (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.
self.query.weight`, ...): other layouts are renamed to them on reading
(`pruning.models.layouts`). `checkpoint_digest` is the SHA-256 a manifest
records, so changed weights are refused later.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from pruning.errors import UserError
from pruning.models.layouts import KNOWN_HEADS, KNOWN_TYPES, canonical_config, canonical_names, has_token_types
from pruning.models.transformer import ACTIVATIONS
from pruning.runtime.atomic import file_digest

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
  config = canonical_config(config)
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
  if not has_token_types(config):
    del shapes["embeddings.token_type_embeddings.weight"]
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
  known = [name for name in unused if KNOWN_HEADS.match(name)]
  unknown = [name for name in unused if not KNOWN_HEADS.match(name)]
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


def read_weights(folder: str, model_type: str = "bert") -> tuple[dict[str, np.ndarray], list[str]]:
  """The checkpoint's encoder tensors as float32 arrays under BERT's names
  (without a `bert.`, `roberta.` or `distilbert.` prefix; see
  `pruning.models.layouts`), and the names of its other tensors (heads)."""
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
  renamed = canonical_names(model_type, encoder)
  return {name: encoder[original] for name, original in renamed.items()}, [
    name for name in tensors if not name.startswith(prefix)
  ]


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
