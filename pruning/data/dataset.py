"""`Dataset`: arrays, labels, stable example ids and a content fingerprint."""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np

from pruning.errors import UserError


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a dataset: features `x` (N, ...), labels `y` (N,), ids (N,)."""

  x: np.ndarray
  y: np.ndarray
  ids: np.ndarray

  def __len__(self) -> int:
    return len(self.y)

  def take(self, indices: np.ndarray) -> Split:
    """The examples at `indices`, in that order."""
    indices = np.asarray(indices, dtype=np.int64)
    return Split(x=self.x[indices], y=self.y[indices], ids=self.ids[indices])


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A classification dataset with a training split and an optional test split.

  `spec` is the string it was loaded from; `fingerprint` is a SHA-256 of its
  contents (features, labels and ids of both splits), so a manifest can prove
  which data it was computed on.
  """

  spec: str
  train: Split
  test: Split | None
  num_classes: int
  class_names: tuple[str, ...] | None = None

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
      digest.update(np.ascontiguousarray(split.x).tobytes())
      digest.update(np.ascontiguousarray(split.y).tobytes())
      digest.update("\0".join(split.ids.tolist()).encode())
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
    }


def validate_labels(y, *, source: str) -> np.ndarray:
  """Labels as int64, refusing non-integer, negative or missing values."""
  y = np.asarray(y)
  if y.ndim == 2 and y.shape[1] == 1:  # (N, 1) as Keras' CIFAR arrays store them
    y = y[:, 0]
  if y.ndim != 1:
    raise UserError(
        f"{source}: labels must be a 1-D array, got shape {y.shape}: store one"
        " integer class per example"
    )
  if y.dtype.kind == "b":
    return y.astype(np.int64)
  if y.dtype.kind == "f":
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise UserError(
          f"{source}: labels must be whole numbers, found non-integer values:"
          " store class indices 0..C-1"
      )
  elif y.dtype.kind not in "iu":
    raise UserError(
        f"{source}: labels have dtype {y.dtype}, not integer: store class"
        " indices 0..C-1"
    )
  y = y.astype(np.int64)
  if len(y) and y.min() < 0:
    raise UserError(
        f"{source}: negative label {int(y.min())}: labels must be class indices"
        " 0..C-1"
    )
  return y


def validate_features(x, *, source: str) -> np.ndarray:
  """Features as float32, refusing non-numeric, NaN or infinite values."""
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    raise UserError(
        f"{source}: features have dtype {x.dtype}, not numeric: store numbers"
    )
  if x.ndim < 2:
    raise UserError(
        f"{source}: features must have shape (N, ...) with at least one"
        f" feature, got {x.shape}"
    )
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise UserError(
        f"{source}: features contain NaN or infinite values: clean or impute"
        " them first"
    )
  return x


def make_split(x, y, ids, *, source: str) -> Split:
  """A validated `Split`; `ids` default to the row number as a string."""
  x = validate_features(x, source=source)
  y = validate_labels(y, source=source)
  if len(x) != len(y):
    raise UserError(
        f"{source}: {len(x)} feature rows but {len(y)} labels: they must have"
        " one label per example"
    )
  if len(y) == 0:
    raise UserError(f"{source}: the split is empty: give at least two classes of examples")
  if ids is None:
    ids = np.arange(len(y)).astype(str)
  ids = np.asarray([str(i) for i in np.asarray(ids).tolist()], dtype=object)
  if len(ids) != len(y):
    raise UserError(f"{source}: {len(ids)} ids for {len(y)} examples: give one id per example")
  unique, counts = np.unique(ids.astype(str), return_counts=True)
  if len(unique) != len(ids):
    raise UserError(
        f"{source}: example ids are not unique (e.g. {unique[counts > 1][0]!r}"
        " repeats): give each example its own id"
    )
  return Split(x=x, y=y, ids=ids)


def make_dataset(
    spec: str,
    train: Split,
    test: Split | None,
    *,
    num_classes: int | None = None,
    class_names=None,
) -> Dataset:
  """A validated `Dataset`: at least two classes, matching feature shapes."""
  present = np.unique(train.y)
  if len(present) < 2:
    raise UserError(
        f"{spec}: the training split has a single class ({int(present[0])}):"
        " pruning by class needs at least two classes"
    )
  largest = int(max(train.y.max(), test.y.max() if test is not None else 0))
  if num_classes is None:
    num_classes = largest + 1
  elif largest >= num_classes:
    raise UserError(
        f"{spec}: label {largest} is out of range for {num_classes} classes:"
        " labels must be 0..C-1"
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
  )


def hold_out(dataset: Dataset, fraction: float, *, seed: int = 0) -> Dataset:
  """Moves a seeded, stratified `fraction` of the training split into a test split.

  For data that ships without a test split. Refuses a dataset that has one.
  """
  from sklearn.model_selection import train_test_split

  if not 0 < fraction < 1:
    raise UserError(f"holdout {fraction!r} must lie in (0, 1), e.g. 0.2")
  if dataset.test is not None:
    raise UserError(f"{dataset.spec}: it already has a test split: drop the holdout option")
  rows = np.arange(len(dataset.train))
  counts = np.bincount(dataset.train.y)
  stratify = dataset.train.y if counts[counts > 0].min() >= 2 else None
  try:
    train_rows, test_rows = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
  except ValueError as error:
    raise UserError(f"{dataset.spec}: cannot hold out {fraction} of {len(rows)} examples ({error})") from None
  train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
  return make_dataset(f"{dataset.spec} (holdout {fraction}, seed {seed})", dataset.train.take(train_rows),
                      dataset.train.take(test_rows), num_classes=dataset.num_classes,
                      class_names=dataset.class_names)
