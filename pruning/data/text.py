"""Text data: a text column (and optionally a second, for sentence pairs as in
NLI) becomes fixed-length token ids.

Sources read text into splits whose `x` and `text` are the strings, shape (N,)
or (N, 2) for pairs; ids, holdouts, long tails and label noise work on them as
on arrays. `tokenize_dataset` then trains a tokenizer on the training split
(or loads a checkpoint's) and replaces `x` with float32 token ids (N, L)
(pairs: (N, 2, L), ids and token types), keeping the strings in `text` for
exports and galleries. Token ids are never standardised (`normalize` is
`none`); padding is id `pad_id`, which is how models build the attention mask.

Tokenised data is cached by fingerprint in `$PRUNING_CACHE_DIR/tokens` (else
`~/.cache/pruning/tokens`): the digest of every split's text and the
tokenizer options names the file, so a second run reads ids instead of
training and encoding again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import stat
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from pruning.data import tokenizer as tokenizers
from pruning.data.dataset import Dataset, Split, hash_texts, split_ids
from pruning.data.tokenizer import TokenizerOptions
from pruning.errors import UserError
from pruning.runtime.cache import cache_root

DEFAULT_TEXT_COLUMN = "text"


def text_columns(columns, text_column: str | None, text_pair_column: str | None, *, spec: str) -> tuple[str, ...]:
  """The text columns a table's `columns` give: `text_column` (None: `text`
  when there is one) and the pair column. Empty for a table of numbers."""
  columns = [str(c) for c in columns]
  if text_column is None:
    if text_pair_column is not None:
      raise UserError(f"{spec}: a text pair column needs its first text column: give --text-column too")
    return (DEFAULT_TEXT_COLUMN,) if DEFAULT_TEXT_COLUMN in columns else ()
  chosen = (text_column,) if text_pair_column is None else (text_column, text_pair_column)
  for column in chosen:
    if column not in columns:
      shown = ", ".join(columns[:8]) + ("..." if len(columns) > 8 else "")
      raise UserError(f"{spec}: no text column {column!r} (columns: {shown}): name it with --text-column")
  if len(set(chosen)) != len(chosen):
    raise UserError(f"{spec}: the text and text pair columns are both {text_column!r}: give two different columns")
  return chosen


def validate_texts(values, *, column: str, source: str) -> np.ndarray:
  """An object array of non-empty strings, or a `UserError` naming the first bad row."""
  values = np.asarray(values, dtype=object)
  for row, value in enumerate(values.tolist()):
    if isinstance(value, bytes):
      try:
        value = value.decode("utf-8")
      except UnicodeDecodeError:
        raise UserError(f"{source}: text column {column!r} row {row} is not UTF-8: re-encode the text") from None
      values[row] = value
    if value is None or (isinstance(value, float) and value != value):
      raise UserError(f"{source}: text column {column!r} row {row} is empty: drop rows without text or give them text")
    if not isinstance(value, str):
      raise UserError(
        f"{source}: text column {column!r} row {row} holds {type(value).__name__} {value!r}, not a string:"
        " store text, or drop the rows without text"
      )
    if not any(unicodedata.category(c)[0] not in "CZ" for c in value):  # spaces, zero-width, control only
      raise UserError(
        f"{source}: text column {column!r} row {row} is empty (or only spaces, zero-width or control"
        " characters): drop such rows or give them text (an empty example has no tokens to score)"
      )
  return values


def make_text_split(columns: list, y, ids, *, names: tuple[str, ...], source: str) -> Split:
  """A validated raw-text `Split`: `x` and `text` are the strings ((N,) or (N, 2))."""
  from pruning.data.dataset import validate_labels

  texts = [validate_texts(c, column=name, source=source) for c, name in zip(columns, names)]
  text = texts[0] if len(texts) == 1 else np.stack(texts, axis=1)
  y = validate_labels(y, source=source)
  if len(text) != len(y):
    raise UserError(f"{source}: {len(text)} texts but {len(y)} labels: give one label per example")
  if len(y) == 0:
    raise UserError(f"{source}: the split is empty: give at least two classes of examples")
  return Split(x=text, y=y, ids=split_ids(ids, len(y), source=source), text=text)


def is_raw_text(dataset: Dataset) -> bool:
  return dataset.train.text is not None and dataset.train.x.dtype == object


def tokenize_dataset(
  dataset: Dataset,
  options: TokenizerOptions | None = None,
  *,
  cache: bool = True,
  tokenizer_json: str | None = None,
) -> Dataset:
  """`dataset` with every split's text as token ids (see the module doc).

  `tokenizer_json`: the serialized tokenizer a manifest or run recorded; it is
  used as it is instead of training or loading one, so data a manifest was
  made from tokenises to the same ids in any process (a trained WordPiece
  vocabulary is not reproducible across processes). A dataset without text is
  returned as it is.
  """
  if not is_raw_text(dataset):
    return dataset
  options = options or TokenizerOptions()
  splits = {name: getattr(dataset, name) for name in ("train", "test", "validation")}
  present = {name: split for name, split in splits.items() if split is not None}
  key = _cache_key(present, options, tokenizer_json)
  cached = _read_cache(key, present, options) if cache else None
  if cached is not None:
    tokenizer, tokenizer_json, encoded = cached
  else:
    if tokenizer_json is not None:
      tokenizer = _from_str(tokenizer_json)
    elif options.trained:
      tokenizer = tokenizers.train_tokenizer(present["train"].text, options)
    else:
      tokenizer = tokenizers.load_tokenizer(options.tokenizer)
    encoded = {
      name: tokenizers.encode(tokenizer, split.text, max_length=options.max_length) for name, split in present.items()
    }
    tokenizer_json = tokenizer.to_str()
    if cache:
      _write_cache(key, tokenizer_json, encoded)
  record = tokenizers.describe(tokenizer, options)
  record["columns"] = list(dataset.text_columns)
  replaced = {name: dataclasses.replace(split, x=encoded[name]) for name, split in present.items()}
  return dataclasses.replace(
    dataset,
    **replaced,
    normalize="none",
    tokenizer=record,
    tokenizer_json=tokenizer_json,
  )


def _from_str(serialized: str):
  from tokenizers import Tokenizer

  try:
    tokenizer = Tokenizer.from_str(serialized)
  except BaseException as error:
    if not tokenizers.rust_failure(error):
      raise
    raise UserError(
      f"the recorded tokenizer is not readable ({str(error)[:120]}): rescore, or give --tokenizer"
    ) from None
  # Checked on a copy: the tokenizer itself stays as it was serialized (its
  # digest is part of the provenance).
  tokenizers.ready(Tokenizer.from_str(serialized), source="the recorded tokenizer")
  return tokenizer


def _cache_key(splits: dict[str, Split], options: TokenizerOptions, tokenizer_json: str | None = None) -> str:
  digest = hashlib.sha256()
  settings = dataclasses.asdict(options)
  if tokenizer_json is not None:  # a recorded tokenizer is named by its bytes
    settings["tokenizer"] = "recorded:" + hashlib.sha256(tokenizer_json.encode()).hexdigest()
  elif not options.trained:  # a loaded tokenizer is named by its bytes, not its path
    settings["tokenizer"] = _file_digest(options.tokenizer)
  elif options.tokenizer == "wordpiece":  # trained the same in every process since 2026-12-05: not the old entries
    settings["trainer"] = "numbered-inner-symbols"
  digest.update(json.dumps(settings, sort_keys=True).encode())
  for name, split in splits.items():
    texts = np.asarray(split.text)
    digest.update(f"\0split:{name}:{texts.shape}".encode())
    hash_texts(digest, texts)
  return digest.hexdigest()


def _file_digest(path: str) -> str:
  where = Path(path)
  files = (
    [where]
    if where.is_file()
    else sorted(p for p in where.glob("*") if p.name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))
  )
  digest = hashlib.sha256()
  for file in files:
    digest.update(file.name.encode())
    digest.update(file.read_bytes())
  return digest.hexdigest()


def cache_folder() -> Path:
  return cache_root() / "tokens"


def _read_cache(key: str, splits: dict[str, Split], options: TokenizerOptions):
  """The cached (tokenizer, its JSON, ids per split), or None when there is no entry.

  A cache is a cache: an entry that is not a regular file, does not match its
  own digest, or holds ids of the wrong shape or range for these splits is
  discarded with one warning and recomputed, never used and never fatal.
  """
  path = cache_folder() / f"{key}.npz"
  if not os.path.lexists(path):
    return None
  try:
    data = _read_regular_file(path)
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
      tokenizer_json = bytes(stored["tokenizer"]).decode("utf-8")
      encoded = {name[len("x_") :]: stored[name] for name in stored.files if name.startswith("x_")}
      recorded = bytes(stored["digest"]).decode("ascii")
    if recorded != _entry_digest(tokenizer_json, encoded):
      raise ValueError("its digest does not match its contents")
    tokenizer = _from_str(tokenizer_json)
    _check_ids(encoded, splits, options, vocab=tokenizer.get_vocab_size())
    return tokenizer, tokenizer_json, encoded
  except Exception as error:  # whatever is wrong with it, the entry is recomputed
    warnings.warn(
      f"token cache entry {path.name} is unusable ({str(error)[:100] or type(error).__name__}):"
      " discarded and tokenised again",
      UserWarning,
      stacklevel=3,
    )
    with contextlib.suppress(OSError):
      path.unlink()
    return None


def _read_regular_file(path: Path) -> bytes:
  """A file's bytes, opened without following a link or blocking on a FIFO."""
  descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
  with os.fdopen(descriptor, "rb") as handle:
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
      raise ValueError("it is not a regular file")
    return handle.read()


def _entry_digest(tokenizer_json: str, encoded: dict[str, np.ndarray]) -> str:
  digest = hashlib.sha256(tokenizer_json.encode("utf-8"))
  for name in sorted(encoded):
    array = np.ascontiguousarray(encoded[name])
    digest.update(f"\0{name}:{array.dtype.str}:{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _check_ids(encoded: dict, splits: dict[str, Split], options: TokenizerOptions, *, vocab: int) -> None:
  if set(encoded) != set(splits):
    raise ValueError(f"it holds splits {sorted(encoded)}, not {sorted(splits)}")
  for name, split in splits.items():
    ids, texts = encoded[name], np.asarray(split.text)
    pairs = texts.ndim == 2
    shape = (len(texts), 2, options.max_length) if pairs else (len(texts), options.max_length)
    if ids.dtype != np.float32 or ids.shape != shape:
      raise ValueError(f"split {name} has ids {ids.dtype} {ids.shape}, not float32 {shape}")
    token_ids = ids[:, 0] if pairs else ids
    if not np.all(np.isfinite(ids)) or np.any(token_ids < 0) or np.any(token_ids >= vocab) or np.any(ids % 1):
      raise ValueError(f"split {name} holds ids outside 0..{vocab - 1}")


def _write_cache(key: str, tokenizer_json: str, encoded: dict) -> None:
  from pruning.runtime.atomic import atomic_path, make_folder

  try:
    folder = make_folder(cache_folder())
    buffer = io.BytesIO()
    arrays = {f"x_{name}": value for name, value in encoded.items()}
    digest = np.frombuffer(_entry_digest(tokenizer_json, encoded).encode("ascii"), np.uint8)
    np.savez(buffer, tokenizer=np.frombuffer(tokenizer_json.encode("utf-8"), np.uint8), digest=digest, **arrays)
    path = folder / f"{key}.npz"
    if os.path.lexists(path) and not path.is_file():
      return  # something that is not a cache entry stands there: leave it, tokenising costs little
    with atomic_path(path, overwrite=True) as tmp:
      tmp.write_bytes(buffer.getvalue())
  except (OSError, UserError):
    pass  # a cache that cannot be written only costs the next run the tokenisation
