"""Tokenizers for text data, from Hugging Face `tokenizers`.

A tokenizer is either trained on the training split (`wordpiece`, as BERT's;
or `bpe`, byte-level as RoBERTa's and GPT-2's) with a vocabulary size, or
loaded from a checkpoint folder (`tokenizer.json`, else BERT's `vocab.txt`
with `tokenizer_config.json`'s `do_lower_case`). Every sequence becomes
`[CLS] A [SEP]` (pairs: `[CLS] A [SEP] B [SEP]`, with token type 1 on B),
truncated and padded to a fixed `max_length`; the pooled head reads the
first position. A trained vocabulary is the same in every process (see
`train_tokenizer`); runs also save their `tokenizer.json`, which
`tokenizer=PATH` loads exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from pruning.errors import UserError

KINDS = ("wordpiece", "bpe")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in a trained vocabulary
PAD_CANDIDATES = ("[PAD]", "<pad>")
# Token ids travel as float32 features (exact below 2**24), like every other input.
MAX_VOCAB = 1 << 24
MAX_LENGTH = 1 << 14


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizerOptions:
  """How text becomes token ids.

  `tokenizer`: `wordpiece` or `bpe` (trained on the training split with
  `vocab_size` entries, `lowercase` first), or the path of a checkpoint
  folder or of a `tokenizer.json` / `vocab.txt` file. `max_length` counts the
  special tokens.
  """

  tokenizer: str = "wordpiece"
  vocab_size: int = 8192
  max_length: int = 128
  lowercase: bool = True

  def __post_init__(self):
    if not isinstance(self.tokenizer, str) or not self.tokenizer:
      raise UserError(f"tokenizer {self.tokenizer!r} must be 'wordpiece', 'bpe' or a checkpoint folder")
    for name, low, high in (("vocab_size", 16, MAX_VOCAB - 1), ("max_length", 4, MAX_LENGTH)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"tokenizer {name} {value!r} must be a whole number in {low}..{high}")
    if not isinstance(self.lowercase, bool):
      raise UserError(f"tokenizer lowercase must be true or false, got {self.lowercase!r}")

  @property
  def trained(self) -> bool:
    return self.tokenizer in KINDS


def train_tokenizer(texts, options: TokenizerOptions):
  """A `tokenizers.Tokenizer` trained on `texts` (strings; pairs give both sides), the same in
  every process.

  `tokenizers`' WordPiece trainer numbers each word-internal symbol (`##a`) when it first meets
  it in a hash map, so the ids, and with them the order in which equally frequent merges are
  taken, changed from process to process (the vocabulary itself differed in 1 of 4 runs on the
  synthetic sentences). Every such symbol is therefore numbered beforehand, in sorted order, as a
  special token of the trainer, and the trained vocabulary is then loaded into a plain WordPiece
  model with only the real special tokens (`tests/test_text.py` trains in separate processes).
  Byte-level BPE needs none of this: its whole alphabet is given up front."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

  special = list(SPECIAL_TOKENS)
  if options.tokenizer == "wordpiece":
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=options.lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    numbered = ["##" + c for c in _inner_characters(tokenizer, texts) if "##" + c not in special]
    trainer: Any = trainers.WordPieceTrainer(
      vocab_size=options.vocab_size, special_tokens=special + numbered, show_progress=False
    )
    tokenizer.train_from_iterator(_flat(texts), trainer=trainer, length=int(np.size(texts)))
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    trained = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    trained.normalizer = tokenizer.normalizer
    trained.pre_tokenizer = tokenizer.pre_tokenizer
    trained.decoder = tokenizer.decoder
    trained.add_special_tokens(special)
  else:
    trained = Tokenizer(models.BPE(unk_token="[UNK]"))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if options.lowercase else [])
    trained.normalizer = normalizers.Sequence(steps)
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trained.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
      vocab_size=options.vocab_size,
      special_tokens=special,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
    )
    trained.train_from_iterator(_flat(texts), trainer=trainer, length=int(np.size(texts)))
  _add_template(trained)
  return trained


def _inner_characters(tokenizer, texts) -> list[str]:
  """The characters that occur inside a word (after the first) once `tokenizer`'s normaliser and
  pre-tokenizer have run over `texts`, sorted."""
  normalize, split = tokenizer.normalizer.normalize_str, tokenizer.pre_tokenizer.pre_tokenize_str
  inner: set[str] = set()
  for text in _flat(texts):
    for word, _ in split(normalize(text)):
      inner.update(word[1:])
  return sorted(inner)


def _flat(texts):
  for row in texts:
    if isinstance(row, str):
      yield row
    else:
      yield from row


def _add_template(tokenizer) -> None:
  from tokenizers import processors

  cls, sep = _special_id(tokenizer, "[CLS]", "<s>"), _special_id(tokenizer, "[SEP]", "</s>")
  cls_token, sep_token = tokenizer.id_to_token(cls), tokenizer.id_to_token(sep)
  tokenizer.post_processor = processors.TemplateProcessing(
    single=f"{cls_token} $A {sep_token}",
    pair=f"{cls_token} $A {sep_token} $B:1 {sep_token}:1",
    special_tokens=[(cls_token, cls), (sep_token, sep)],
  )


def _special_id(tokenizer, *names: str) -> int:
  for name in names:
    token_id = tokenizer.token_to_id(name)
    if token_id is not None:
      return int(token_id)
  raise UserError(f"the tokenizer has none of the tokens {', '.join(names)}: give a BERT-style vocabulary")


def load_tokenizer(path: str):
  """A tokenizer from a checkpoint folder, `tokenizer.json` or BERT's `vocab.txt`."""
  from tokenizers import Tokenizer
  from tokenizers.implementations import BertWordPieceTokenizer

  where = Path(path)
  if where.is_dir():
    candidates = [where / "tokenizer.json", where / "vocab.txt"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
      raise UserError(
        f"tokenizer folder {path!r} has neither tokenizer.json nor vocab.txt: point at the checkpoint's folder,"
        " or train one with tokenizer: wordpiece"
      )
    where = found
  elif not where.is_file():
    raise UserError(f"tokenizer {path!r}: no such file or folder; give 'wordpiece', 'bpe' or a checkpoint folder")
  lowercase = _do_lower_case(where.parent) if not where.name.endswith(".json") else True
  try:
    if where.name.endswith(".json"):
      tokenizer = Tokenizer.from_file(str(where))
    else:
      tokenizer = BertWordPieceTokenizer(str(where), lowercase=lowercase)._tokenizer
  except BaseException as error:
    if not rust_failure(error):
      raise
    raise UserError(
      f"tokenizer {str(where)!r} is not readable ({str(error)[:120]}): give a valid tokenizer file"
    ) from None
  return ready(tokenizer, source=str(where))


def rust_failure(error: BaseException) -> bool:
  """The Rust library raises plain Exceptions, and a panic in it arrives as
  pyo3's PanicException, a BaseException: both mean a bad tokenizer.
  Interrupts are never caught."""
  return isinstance(error, Exception) or type(error).__name__ == "PanicException"


def ready(tokenizer, *, source: str):
  """A loaded tokenizer without its own padding or truncation, with the
  [CLS]/[SEP] template, and checked on a sentence: a tokenizer whose rules
  fail (a bad regex, an empty vocabulary) is refused here, not mid-run."""
  try:
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if tokenizer.post_processor is None:
      _add_template(tokenizer)
    tokenizer.encode("A check sentence, with punctuation: 42!")
  except UserError:
    raise
  except BaseException as error:
    if not rust_failure(error):
      raise
    raise UserError(f"tokenizer {source!r} fails on text ({str(error)[:120]}): give a valid tokenizer file") from None
  return tokenizer


def _do_lower_case(folder: Path) -> bool:
  config = folder / "tokenizer_config.json"
  if config.is_file():
    try:
      settings = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
      raise UserError(f"{config}: not valid JSON: fix or remove it") from None
    value = settings.get("do_lower_case", True) if isinstance(settings, dict) else None
    if not isinstance(value, bool):  # the string "false" would read as true
      raise UserError(f"{config}: do_lower_case is {value!r}, not true or false: fix the tokenizer config")
    return value
  return True


def pad_id(tokenizer) -> int:
  for name in PAD_CANDIDATES:
    token_id = tokenizer.token_to_id(name)
    if token_id is not None:
      return int(token_id)
  raise UserError(f"the tokenizer has no padding token ({' or '.join(PAD_CANDIDATES)}): add one to its vocabulary")


ENCODE_BLOCK = 4096  # texts per encode_batch call


def encode(tokenizer, texts: np.ndarray, *, max_length: int) -> np.ndarray:
  """float32 token ids (N, L), or (N, 2, L) ids and token types for pairs (N, 2)."""
  pairs = texts.ndim == 2
  tokenizer.enable_truncation(max_length=max_length)
  tokenizer.enable_padding(length=max_length, pad_id=pad_id(tokenizer))
  out = np.empty((len(texts), 2, max_length) if pairs else (len(texts), max_length), np.float32)
  # A block at a time: an Encoding keeps its tokens, offsets and masks (kilobytes per text), so
  # encoding 100,000 texts at once held about a gigabyte.
  for start in range(0, len(texts), ENCODE_BLOCK):
    part = texts[start : start + ENCODE_BLOCK]
    encodings = tokenizer.encode_batch([tuple(row) for row in part.tolist()] if pairs else part.tolist())
    ids = np.asarray([e.ids for e in encodings], np.float32).reshape(len(part), max_length)
    if pairs:
      out[start : start + len(part), 0] = ids
      out[start : start + len(part), 1] = np.asarray([e.type_ids for e in encodings], np.float32).reshape(ids.shape)
    else:
      out[start : start + len(part)] = ids
  return out


def describe(tokenizer, options: TokenizerOptions) -> dict:
  """The provenance record: how the tokenizer was made and a digest of it."""
  serialized = tokenizer.to_str()
  return {
    "tokenizer": options.tokenizer if options.trained else str(Path(options.tokenizer).resolve()),
    "kind": options.tokenizer if options.trained else "pretrained",
    "vocab_size": int(tokenizer.get_vocab_size()),
    # What was asked for: a trained vocabulary may come out smaller (`vocab_size`).
    "requested_vocab_size": options.vocab_size if options.trained else None,
    "max_length": options.max_length,
    "lowercase": options.lowercase if options.trained else None,
    "pad_id": pad_id(tokenizer),
    "sha256": hashlib.sha256(serialized.encode()).hexdigest(),
  }


def sequence_lengths(x: np.ndarray, pad_id: int) -> np.ndarray:
  """Per example, the position after its last real token (token ids (N, L) or pairs (N, 2, L))."""
  ids = x[:, 0] if x.ndim == 3 else x
  real = np.asarray(ids) != pad_id
  last = real.shape[1] - np.argmax(real[:, ::-1], axis=1)
  return np.where(real.any(axis=1), last, 1).astype(np.int64)
