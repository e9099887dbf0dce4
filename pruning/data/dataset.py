"""`Dataset`: arrays, labels, stable example ids and a content fingerprint."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any

import numpy as np

from pruning.data.streaming import all_finite, hash_rows, is_mapped
from pruning.errors import UserError


class RowNumberIds:
  """The ids of data that brings none: each row's number as a string, made on
  demand. Reads like the array `numpy.arange(n).astype(str)` (indexing,
  iteration, `astype`, `tolist`) without holding N strings, which matters for
  data streamed from disk."""

  def __init__(self, n: int):
    self._n = int(n)

  def __len__(self) -> int:
    return self._n

  @property
  def shape(self) -> tuple[int]:
    return (self._n,)

  @property
  def ndim(self) -> int:
    return 1

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(f"U{len(str(max(self._n - 1, 0)))}")

  def _rows(self, key) -> np.ndarray:
    if isinstance(key, slice):
      return np.arange(*key.indices(self._n))
    key = np.asarray(key)
    if key.dtype == bool:
      if key.shape != (self._n,):
        raise IndexError(f"boolean index of shape {key.shape} for {self._n} ids")
      return np.flatnonzero(key)
    if key.dtype.kind not in "iu":
      raise IndexError(f"ids are indexed by integers, slices or masks, not {key.dtype}")
    rows = np.where(key < 0, key + self._n, key)
    if rows.size and (rows.min() < 0 or rows.max() >= self._n):
      raise IndexError(f"row index out of range for {self._n} ids")
    return rows

  def __getitem__(self, key):
    if isinstance(key, (int, np.integer)):
      row = int(key) + (self._n if key < 0 else 0)
      if not 0 <= row < self._n:
        raise IndexError(f"row {int(key)} out of range for {self._n} ids")
      return str(row)
    return self._rows(key).astype(self.dtype)

  def __iter__(self):
    return (str(i) for i in range(self._n))

  def __array__(self, dtype=None, copy=None):
    values = self[:]
    return values if dtype is None else values.astype(dtype)

  def astype(self, dtype, copy: bool = True) -> np.ndarray:
    return self[:].astype(dtype)

  def tolist(self) -> list[str]:
    return [str(i) for i in range(self._n)]

  def __repr__(self) -> str:
    return f"RowNumberIds({self._n})"


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a dataset: features `x` (N, ...), labels `y` (N,), ids (N,).

  `clean_y` holds the true labels where a study injected label noise into `y`
  (see `pruning.data.transforms`); None otherwise. `text` holds the strings of
  text data, (N,) or (N, 2) for sentence pairs (`x` is then their token ids,
  see `pruning.data.text`); None for arrays.
  """

  x: np.ndarray
  y: np.ndarray
  ids: np.ndarray | RowNumberIds
  clean_y: np.ndarray | None = None
  text: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.y)

  @property
  def is_noisy(self) -> np.ndarray | None:
    return None if self.clean_y is None else self.y != self.clean_y

  def take(self, indices: np.ndarray) -> Split:
    """The examples at `indices`, in that order."""
    indices = np.asarray(indices, dtype=np.int64)
    return Split(
      x=self.x[indices],
      y=self.y[indices],
      ids=self.ids[indices],
      clean_y=None if self.clean_y is None else self.clean_y[indices],
      text=None if self.text is None else self.text[indices],
    )


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A classification dataset: a training split, optional test and validation splits.

  `spec` is the string it was loaded from; `fingerprint` is a SHA-256 of its
  contents (features, labels and ids of every split), so a manifest can prove
  which data it was computed on. `transforms` records what was done to the
  data as loaded (holdouts, long-tail subsampling, label noise).
  """

  spec: str
  train: Split
  test: Split | None
  num_classes: int
  class_names: tuple[str, ...] | None = None
  validation: Split | None = None
  transforms: tuple[dict, ...] = ()
  normalize: str = "auto"  # how training standardises inputs (`pruning.data.normalization`)
  text_columns: tuple[str, ...] = ()  # the table columns text data was read from
  tokenizer: dict | None = None  # text data: how its token ids were made (`pruning.data.tokenizer.describe`)
  tokenizer_json: str | None = None  # text data: the tokenizer itself, saved with a run
  feature_columns: tuple[str, ...] = ()  # a table's feature columns, in order (one-hot ones as COLUMN=VALUE)

  @property
  def is_text(self) -> bool:
    return self.train.text is not None

  def sequence_lengths(self) -> np.ndarray | None:
    """Text: each training example's length in tokens (what length bucketing groups by); None otherwise."""
    if self.tokenizer is None or self.train.x.dtype == object:
      return None
    from pruning.data.tokenizer import sequence_lengths

    return sequence_lengths(self.train.x, int(self.tokenizer["pad_id"]))

  def features_line(self, *, shown: int = 12) -> str | None:
    """`features (14): age, income, plan=basic, ...`: what a table's model reads (None: not a table)."""
    names = self.feature_columns
    if not names:
      return None
    listed = ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")
    return f"features ({len(names)}): {listed}"

  def model_options(self) -> dict:
    """What a model must know of the data to be built: the vocabulary size
    and padding id of token ids (`pruning.models.with_data_options`)."""
    if self.tokenizer is None:
      return {}
    return {"vocab_size": int(self.tokenizer["vocab_size"]), "pad_id": int(self.tokenizer["pad_id"])}

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])

  @functools.cached_property
  def fingerprint(self) -> str:
    digest = hashlib.sha256()
    for split in (self.train, self.test):
      if split is None:
        digest.update(b"no-split")
        continue
      digest.update(str(split.x.shape).encode())
      hash_rows(digest, split.x)
      digest.update(np.ascontiguousarray(split.y).tobytes())
      _hash_ids(digest, split.ids)
    # Splits and fields that older datasets lack are hashed only when present,
    # so their fingerprints do not change.
    if self.validation is not None:
      digest.update(b"validation")
      hash_rows(digest, self.validation.x)
      digest.update(np.ascontiguousarray(self.validation.y).tobytes())
      _hash_ids(digest, self.validation.ids)
    if self.train.clean_y is not None:
      digest.update(b"clean_y")
      digest.update(np.ascontiguousarray(self.train.clean_y).tobytes())
    for split in (self.train, self.test, self.validation):
      if split is not None and split.text is not None:
        digest.update(b"text")
        hash_texts(digest, split.text)
    return digest.hexdigest()

  def describe(self) -> dict:
    """A JSON-ready summary for provenance."""
    return {
      "spec": self.spec,
      "fingerprint": self.fingerprint,
      "num_classes": self.num_classes,
      "class_names": list(self.class_names) if self.class_names else None,
      "input_shape": list(self.input_shape),
      "num_train": len(self.train),
      "num_test": len(self.test) if self.test is not None else 0,
      "num_validation": len(self.validation) if self.validation is not None else 0,
      "transforms": list(self.transforms),
      **({"text_columns": list(self.text_columns), "tokenizer": self.tokenizer} if self.is_text else {}),
      **({"feature_columns": list(self.feature_columns)} if self.feature_columns else {}),
    }


def _hash_ids(digest, ids: np.ndarray | RowNumberIds, *, chunk: int = 65536) -> None:
  """The ids joined by NUL, hashed a chunk at a time (no N-string temporary)."""
  for start in range(0, len(ids), chunk):
    if start:
      digest.update(b"\0")
    digest.update("\0".join(ids[start : start + chunk].tolist()).encode())


def validate_labels(y, *, source: str) -> np.ndarray:
  """Labels as int64, refusing non-integer, negative or missing values."""
  y = np.asarray(y)
  if y.ndim == 2 and y.shape[1] == 1:  # (N, 1) as Keras' CIFAR arrays store them
    y = y[:, 0]
  if y.ndim != 1:
    raise UserError(f"{source}: labels must be a 1-D array, got shape {y.shape}: store one integer class per example")
  if y.dtype.kind == "b":
    return y.astype(np.int64)
  if y.dtype.kind == "f":
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise UserError(f"{source}: labels must be whole numbers, found non-integer values: store class indices 0..C-1")
  elif y.dtype.kind not in "iu":
    raise UserError(f"{source}: labels have dtype {y.dtype}, not integer: store class indices 0..C-1")
  y = y.astype(np.int64, copy=False)
  if len(y) and y.min() < 0:
    raise UserError(f"{source}: negative label {int(y.min())}: labels must be class indices 0..C-1")
  return y


def validate_features(x, *, source: str) -> np.ndarray:
  """Features as float32, refusing non-numeric, NaN or infinite values.

  Memory-mapped features stay mapped, in their stored dtype, and are checked a
  chunk at a time (see `pruning.data.streaming`).
  """
  if not is_mapped(x):
    x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    raise UserError(f"{source}: features have dtype {x.dtype}, not numeric: store numbers")
  if x.ndim < 2 or int(np.prod(x.shape[1:], dtype=np.int64)) == 0:
    raise UserError(f"{source}: features must have shape (N, ...) with at least one feature, got {x.shape}")
  if not is_mapped(x):
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 becomes inf, refused just below
      x = x.astype(np.float32)
  if not all_finite(x):
    raise UserError(
      f"{source}: features contain NaN or infinite values, or values beyond float32's range"
      " (about ±3.4e38): clean, impute or rescale them first"
    )
  return x


def make_split(x, y, ids, *, source: str) -> Split:
  """A validated `Split`; `ids` default to the row number as a string."""
  x = validate_features(x, source=source)
  y = validate_labels(y, source=source)
  if len(x) != len(y):
    raise UserError(f"{source}: {len(x)} feature rows but {len(y)} labels: they must have one label per example")
  if len(y) == 0:
    raise UserError(f"{source}: the split is empty: give at least two classes of examples")
  return Split(x=x, y=y, ids=split_ids(ids, len(y), source=source))


def split_ids(ids, n: int, *, source: str) -> np.ndarray | RowNumberIds:
  """`ids` as strings, checked to be one per example and unique; the row
  numbers when None (unique by construction, and a compact array rather than
  N Python strings, which matters for data streamed from disk)."""
  if ids is None:
    return RowNumberIds(n)
  ids = np.asarray([str(i) for i in np.asarray(ids).tolist()], dtype=object)
  if len(ids) != n:
    raise UserError(f"{source}: {len(ids)} ids for {n} examples: give one id per example")
  unique, counts = np.unique(ids.astype(str), return_counts=True)
  if len(unique) != len(ids):
    raise UserError(
      f"{source}: example ids are not unique (e.g. {unique[counts > 1][0]!r} repeats): give each example its own id"
    )
  return ids


def hash_texts(digest, texts: np.ndarray) -> None:
  """Every string of `texts`, NUL-terminated, into `digest` (fingerprints and the token cache)."""
  for value in np.ravel(texts).tolist():
    digest.update(value.encode("utf-8", "surrogatepass") + b"\0")


def make_dataset(
  spec: str,
  train: Split,
  test: Split | None,
  *,
  num_classes: int | None = None,
  class_names=None,
  text_columns: tuple[str, ...] = (),
  feature_columns: tuple[str, ...] = (),
) -> Dataset:
  """A validated `Dataset`: at least two classes, matching feature shapes."""
  present = np.unique(train.y)
  if len(present) < 2:
    raise UserError(
      f"{spec}: the training split has a single class ({int(present[0])}): pruning by class needs at least two classes"
    )
  largest = int(max(train.y.max(), test.y.max() if test is not None else 0))
  examples = len(train) + (len(test) if test is not None else 0)
  if num_classes is None and largest >= examples:
    raise UserError(
      f"{spec}: label {largest} is out of range for {examples} examples: labels must be class indices"
      " 0..C-1 with C at most the number of examples; map raw label ids to 0..C-1 first"
    )
  if num_classes is None:
    num_classes = largest + 1
    missing = np.setdiff1d(np.arange(num_classes), present)
    if len(missing):
      raise UserError(
        f"{spec}: labels go up to {largest} but no training example has label"
        f" {', '.join(map(str, missing[:5].tolist()))}{'...' if len(missing) > 5 else ''}: labels must be class"
        " indices 0..C-1 with every class present; map them first (numpy.unique(y, return_inverse=True)),"
        " or store string labels in a Parquet table, which are mapped to sorted class names"
      )
  elif largest >= num_classes:
    raise UserError(f"{spec}: label {largest} is out of range for {num_classes} classes: labels must be 0..C-1")
  if test is not None:
    unseen = np.setdiff1d(np.unique(test.y), present)
    if len(unseen):
      raise UserError(
        f"{spec}: the test split has label {int(unseen[0])}, which no training example has: a model"
        " cannot learn it; drop those test rows or add training examples of that class"
      )
  if test is not None and test.x.shape[1:] != train.x.shape[1:]:
    raise UserError(
      f"{spec}: test features have shape {test.x.shape[1:]} but training"
      f" features {train.x.shape[1:]}: both splits need the same shape"
    )
  return Dataset(
    spec=spec,
    train=train,
    test=test,
    num_classes=int(num_classes),
    class_names=tuple(class_names) if class_names is not None else None,
    text_columns=tuple(text_columns),
    feature_columns=tuple(feature_columns),
  )


def hold_out(dataset: Dataset, fraction: float, *, seed: int = 0, into: str = "test") -> Dataset:
  """Moves a seeded, stratified `fraction` of the training split into a `test`
  or `validation` split. Refuses a dataset that already has that split.
  """
  from sklearn.model_selection import train_test_split

  option = "holdout" if into == "test" else "validation"
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
    raise UserError(f"{option} {fraction!r} must be a fraction in (0, 1), e.g. 0.2")
  if getattr(dataset, into) is not None:
    raise UserError(f"{dataset.spec}: it already has a {into} split: drop the {option} option")
  rows = np.arange(len(dataset.train))
  counts = np.bincount(dataset.train.y)
  stratify = dataset.train.y if counts[counts > 0].min() >= 2 else None
  try:
    train_rows, held_rows = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
  except ValueError as error:
    raise UserError(f"{dataset.spec}: cannot hold out {fraction} of {len(rows)} examples ({error})") from None
  train_rows, held_rows = np.sort(train_rows), np.sort(held_rows)
  held = make_dataset(
    dataset.spec,
    dataset.train.take(train_rows),
    dataset.test,
    num_classes=dataset.num_classes,
    class_names=dataset.class_names,
    text_columns=dataset.text_columns,
    feature_columns=dataset.feature_columns,
  )
  splits: dict[str, Any] = {"validation": dataset.validation, into: dataset.train.take(held_rows)}
  return dataclasses.replace(
    held,
    **splits,
    normalize=dataset.normalize,
    transforms=dataset.transforms + ({"transform": f"hold_out_{into}", "fraction": fraction, "seed": seed},),
  )
