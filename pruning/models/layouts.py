"""Checkpoint layouts of the BERT family, renamed to BERT's on reading.

The encoders share one architecture (post-LayerNorm blocks, absolute
positions); their checkpoints differ in names and in a few details:

- `bert`: the reference names.
- `roberta` (Liu et al., 2019): BERT's names; positions start after the
  padding id (`pad_token_id + 1`, so `max_position_embeddings` 514 holds 512
  tokens); one token type; a byte-level BPE `tokenizer.json` (`<pad>` = 1).
- `distilbert` (Sanh et al., 2019): its own names and config keys
  (`dim`, `n_layers`, ...), no token-type embeddings (held at zero and
  frozen), no pooler (a random one is trained, as for a BERT saved without).

`canonical_config` maps a config to BERT's keys; `canonical_names` renames
a layout's tensors to BERT's, so the checks and the weight copy are written
once (`pruning.models.checkpoints`, `pruning.models.pretrained.Bert`).
"""

from __future__ import annotations

import re

KNOWN_TYPES = ("bert", "roberta", "distilbert")

_DISTILBERT_CONFIG = {
  "dim": "hidden_size",
  "n_layers": "num_hidden_layers",
  "n_heads": "num_attention_heads",
  "hidden_dim": "intermediate_size",
  "activation": "hidden_act",
}
_DISTILBERT_NAMES = [
  (re.compile(r"^transformer\.layer\.(\d+)\.attention\.q_lin\."), r"encoder.layer.\1.attention.self.query."),
  (re.compile(r"^transformer\.layer\.(\d+)\.attention\.k_lin\."), r"encoder.layer.\1.attention.self.key."),
  (re.compile(r"^transformer\.layer\.(\d+)\.attention\.v_lin\."), r"encoder.layer.\1.attention.self.value."),
  (re.compile(r"^transformer\.layer\.(\d+)\.attention\.out_lin\."), r"encoder.layer.\1.attention.output.dense."),
  (re.compile(r"^transformer\.layer\.(\d+)\.sa_layer_norm\."), r"encoder.layer.\1.attention.output.LayerNorm."),
  (re.compile(r"^transformer\.layer\.(\d+)\.ffn\.lin1\."), r"encoder.layer.\1.intermediate.dense."),
  (re.compile(r"^transformer\.layer\.(\d+)\.ffn\.lin2\."), r"encoder.layer.\1.output.dense."),
  (re.compile(r"^transformer\.layer\.(\d+)\.output_layer_norm\."), r"encoder.layer.\1.output.LayerNorm."),
]
# Heads a checkpoint may carry that a new classification head replaces.
KNOWN_HEADS = re.compile(
  r"(cls\.predictions\.|cls\.seq_relationship\.|classifier\.|pre_classifier\.|lm_head\.|vocab_transform\."
  r"|vocab_layer_norm\.|vocab_projector\.|(.*\.)?embeddings\.position_ids$)"
)


def canonical_config(config: dict) -> dict:
  """`config` with BERT's keys: DistilBERT's renamed, with one (zero) token type and its fixed epsilon."""
  if config.get("model_type") != "distilbert":
    return config
  renamed = {_DISTILBERT_CONFIG.get(key, key): value for key, value in config.items()}
  renamed.setdefault("layer_norm_eps", 1e-12)
  renamed["type_vocab_size"] = 1
  return renamed


def canonical_names(model_type: str, names):
  """{BERT name: the checkpoint's name} for a layout's encoder tensors (prefix removed)."""
  if model_type != "distilbert":
    return {name: name for name in names}
  renamed = {}
  for name in names:
    canonical = name
    for pattern, replacement in _DISTILBERT_NAMES:
      canonical = pattern.sub(replacement, canonical)
    renamed[canonical] = name
  return renamed


def position_offset(config: dict) -> int:
  """The position id of a sequence's first token: RoBERTa counts from after its padding id."""
  return int(config.get("pad_token_id", 1)) + 1 if config.get("model_type") == "roberta" else 0


def has_token_types(config: dict) -> bool:
  return config.get("model_type") != "distilbert"
