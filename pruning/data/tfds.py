"""TensorFlow Datasets through `tfds.data_source` (ArrayRecord; no TensorFlow needed),
or through tf.data for datasets stored as TFRecord (needs the `tensorflow` extra).

Example ids follow the format of `tfds.ReadConfig(add_tfds_id=True)`:
`<shard file name>__<index in shard>`, e.g.
`mnist-train.array_record-00000-of-00001__17`, so they match what a tf.data
pipeline with `add_tfds_id=True` sees for the same examples.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pruning.data.dataset import Dataset, Split, make_dataset, make_split
from pruning.data.sources import register_source
from pruning.data.streaming import SpillFile
from pruning.errors import UserError
from pruning.runtime.progress import progress_bar

READ_CHUNK = 4096


def parse_tfds_spec(rest: str) -> tuple[str, str]:
  """`NAME[/CONFIG][:VERSION]:SPLIT` -> (builder name with version, split).

  The split may be sliced (`train[:80%]`, `train[100:200]`): its brackets can
  hold colons, so the name ends at the last colon before the first bracket.
  """
  bracket = rest.find("[")
  head, tail = (rest, "") if bracket < 0 else (rest[:bracket], rest[bracket:])
  name, sep, split = head.rpartition(":")
  split += tail
  if not sep or not name or not split:
    raise UserError(
      f"tfds:{rest}: expected tfds:NAME[/CONFIG][:VERSION]:SPLIT, e.g. tfds:mnist:train or tfds:mnist:3.0.1:train[:80%]"
    )
  return name, split


def _tfds_ids(source, name: str, split: str) -> list[str]:
  """Ids as `ReadConfig(add_tfds_id=True)` builds them, from the file instructions."""
  from tensorflow_datasets.core.data_sources import base

  try:
    instructions = base.file_instructions(source.dataset_info, source.split)
  except (KeyError, ValueError, AttributeError):
    instructions = []
  if instructions and sum(i.take for i in instructions) == len(source):
    ids: list[str] = []
    for instruction in instructions:
      prefix = os.path.basename(instruction.filename)
      ids.extend(f"{prefix}__{instruction.skip + j}" for j in range(instruction.take))
    return ids
  # Mocked or unprepared datasets have no shard files; fall back to a stable
  # positional id in the same `<prefix>__<index>` form.
  return [f"{name.replace('/', '-')}-{split}__{i}" for i in range(len(source))]


def _chunks(source, name: str, split: str):
  """A random-access split's examples, `READ_CHUNK` at a time, with a progress bar."""
  for start in progress_bar(range(0, len(source), READ_CHUNK), desc=f"reading {name}:{split}"):
    keys = list(range(start, min(start + READ_CHUNK, len(source))))
    try:
      yield source.__getitems__(keys)
    except TypeError:  # tfds.testing.mock_data's source has no batched read
      yield [source[k] for k in keys]


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _read_split_with_tf_data(
  name: str, split: str, *, data_dir: str | None, spec: str, text_column=None, text_pair_column=None
) -> tuple[Split, Any]:
  """A TFRecord-stored split through tf.data, with `ReadConfig(add_tfds_id=True)` ids."""
  import tensorflow_datasets as tfds

  try:
    import tensorflow  # noqa: F401
  except ImportError:
    raise UserError(
      f"{spec}: {name!r} is stored as TFRecord, which only tf.data can read: install TensorFlow"
      " (pip install 'pruning[tensorflow]'), or prepare the dataset with file_format='array_record'"
    ) from None
  from pruning.data.text import make_text_split

  builder = tfds.builder(name, data_dir=data_dir)
  texts = _text_keys(builder.info, text_column, text_pair_column, spec)
  keys = builder.info.supervised_keys or ("image", "label")
  label_key = keys[1] if builder.info.supervised_keys else "label"
  feature_keys = texts or (keys[0],)
  dataset = builder.as_dataset(split=split, shuffle_files=False, read_config=tfds.ReadConfig(add_tfds_id=True))
  columns: list[list] = [[] for _ in feature_keys]
  ys, ids = [], []
  for example in progress_bar(tfds.as_numpy(dataset), desc=f"reading {name}:{split} (tf.data)"):
    for column, key in zip(columns, feature_keys):
      column.append(example[key])
    ys.append(example[label_key])
    ids.append(_text(example["example_id"] if "example_id" in example else example["tfds_id"]))
  if not ys:
    raise UserError(f"{spec}: split {split!r} is empty: choose a split with examples")
  if texts:
    return make_text_split(columns, np.asarray(ys), ids, names=texts, source=spec), builder.info
  return make_split(np.stack(columns[0]), np.asarray(ys), ids, source=spec), builder.info


def _text_keys(info, text_column: str | None, text_pair_column: str | None, spec: str) -> tuple[str, ...]:
  """The text features to read: the ones named, else a supervised key that is a `Text` feature."""
  import tensorflow_datasets as tfds

  from pruning.data.text import text_columns

  names = list(getattr(info.features, "keys", lambda: [])())
  if text_column is not None:
    return text_columns(names, text_column, text_pair_column, spec=spec)
  keys = info.supervised_keys
  if keys and isinstance(keys[0], str) and isinstance(info.features[keys[0]], tfds.features.Text):
    return (keys[0],)
  return text_columns(names, None, text_pair_column, spec=spec)


def _read_split(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  spec: str,
  stream: bool = False,
  text_column: str | None = None,
  text_pair_column: str | None = None,
) -> tuple[Split, Any]:
  import tensorflow_datasets as tfds

  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except NotImplementedError:  # stored as TFRecord: no random access
    return _read_split_with_tf_data(
      name, split, data_dir=data_dir, spec=spec, text_column=text_column, text_pair_column=text_pair_column
    )
  except Exception as error:  # TFDS raises many types for a missing dataset
    raise UserError(
      f"{spec}: TFDS could not open {name!r} split {split!r} ({type(error).__name__}:"
      f" {str(error).splitlines()[0][:160] if str(error) else ''}): prepare it in"
      " --data-dir first (no downloads happen at run time)"
    ) from None
  info = source.dataset_info
  texts = _text_keys(info, text_column, text_pair_column, spec)
  if texts:
    return _read_text_split(source, info, texts, name=name, split=split, spec=spec), info
  keys = info.supervised_keys or ("image", "label")
  if isinstance(keys[0], (tuple, list, dict)):
    raise UserError(f"{spec}: nested supervised keys {keys} are not supported yet")
  feature_key, label_key = keys[0], keys[1]
  xs: list = []
  ys: list = []
  own_ids: list = []
  spill = SpillFile() if stream else None  # features to disk a chunk at a time, not into memory
  # A dataset exported by pruning carries the original ids as a feature.
  has_ids = "example_id" in getattr(info.features, "keys", lambda: [])()
  for batch in _chunks(source, name, split):
    if spill is not None:
      spill.append(np.stack([example[feature_key] for example in batch]))
    else:
      xs.extend(example[feature_key] for example in batch)
    ys.extend(example[label_key] for example in batch)
    if has_ids:
      own_ids.extend(_text(example["example_id"]) for example in batch)
  if not ys:
    raise UserError(f"{spec}: split {split!r} is empty: choose a split with examples")
  ids = own_ids if has_ids else _tfds_ids(source, name, split)
  x = spill.finish() if spill is not None else np.stack(xs)
  split_data = make_split(x, np.asarray(ys), ids, source=spec)
  return split_data, info


def _read_text_split(source, info, texts: tuple[str, ...], *, name: str, split: str, spec: str) -> Split:
  """The text features `texts` and the labels of a random-access split."""
  from pruning.data.text import make_text_split

  label_key = (info.supervised_keys or (None, "label"))[1]
  columns: list[list] = [[] for _ in texts]
  ys: list = []
  own_ids: list = []
  has_ids = "example_id" in getattr(info.features, "keys", lambda: [])()
  for batch in _chunks(source, name, split):
    for column, key in zip(columns, texts):
      column.extend(example[key] for example in batch)
    ys.extend(example[label_key] for example in batch)
    if has_ids:
      own_ids.extend(_text(example["example_id"]) for example in batch)
  if not ys:
    raise UserError(f"{spec}: split {split!r} is empty: choose a split with examples")
  ids = own_ids if has_ids else _tfds_ids(source, name, split)
  return make_text_split(columns, np.asarray(ys), ids, names=texts, source=spec)


def load_tfds(
  rest: str,
  *,
  data_dir: str | None = None,
  test_split: str | None = "test",
  spec: str | None = None,
  stream: bool = False,
  text_column: str | None = None,
  text_pair_column: str | None = None,
) -> Dataset:
  """Loads `NAME[/CONFIG]:SPLIT`, and `test_split` as the test split when it exists.

  With `stream`, the training split's features (from an ArrayRecord data
  source) go to a memory-mapped spill file a chunk at a time instead of into
  memory (`pruning.data.streaming`)."""
  spec = spec or f"tfds:{rest}"
  name, split = parse_tfds_spec(rest)
  train, info = _read_split(
    name,
    split,
    data_dir=data_dir,
    spec=spec,
    stream=stream,
    text_column=text_column,
    text_pair_column=text_pair_column,
  )
  test = None
  if test_split and test_split != split:
    try:
      test, _ = _read_split(
        name, test_split, data_dir=data_dir, spec=spec, text_column=text_column, text_pair_column=text_pair_column
      )
    except UserError:
      test = None
  num_classes = None
  class_names = None
  label_feature = info.features[(info.supervised_keys or ("image", "label"))[1]] if info.features else None
  if label_feature is not None and hasattr(label_feature, "num_classes"):
    num_classes = label_feature.num_classes
    class_names = getattr(label_feature, "names", None)
  texts = _text_keys(info, text_column, text_pair_column, spec) if train.text is not None else ()
  return make_dataset(spec, train, test, num_classes=num_classes, class_names=class_names, text_columns=texts)


@register_source(
  "tfds", argument="NAME[/CONFIG][:VERSION]:SPLIT", description="a prepared TensorFlow Datasets dataset (no download)"
)
def _tfds_source(
  rest, *, spec, data_dir=None, test_split="test", stream=False, text_column=None, text_pair_column=None, **options
) -> Dataset:
  return load_tfds(
    rest,
    data_dir=data_dir,
    test_split=test_split,
    spec=spec,
    stream=stream,
    text_column=text_column,
    text_pair_column=text_pair_column,
  )
