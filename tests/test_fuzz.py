"""Property-based tests of the surface users feed: any input either works or
fails with a one-line `UserError` (exit status 2 from the CLI), never a
traceback, a hang or a wrong result."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_selection import toy_manifest

import pruning
from pruning import UserError
from pruning.cli import main
from pruning.config import parse_config

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
  st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=12)
)
yaml_values = st.recursive(
  scalars,
  lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
  max_leaves=12,
)
known_keys = st.sampled_from(
  [
    "name",
    "dataset",
    "model",
    "model_options",
    "training",
    "proxy",
    "scores",
    "selections",
    "sweep",
    "retrain",
    "output",
    "spec",
    "keep",
    "seeds",
    "epochs",
    "strategy",
    "class_rule",
    "holdout",
    "long_tail",
    "label_noise",
    "beta",
  ]
)


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.one_of(known_keys, st.text(max_size=8)), yaml_values, max_size=6))
def test_any_config_mapping_parses_or_fails_with_a_user_error(raw):
  try:
    config = parse_config(raw, source="fuzz.yaml")
  except UserError as error:
    assert "\n" not in str(error)
    return
  assert config.name == raw["name"]


def test_unknown_config_keys_suggest_the_nearest():
  with pytest.raises(UserError, match="did you mean 'selections'"):
    parse_config({"name": "x", "selectons": []})


@FUZZ
@given(st.text(max_size=30))
def test_any_dataset_spec_loads_or_fails_with_a_user_error(spec):
  try:
    pruning.load_dataset(spec)
  except UserError as error:
    assert "\n" not in str(error)


@FUZZ
@given(
  keep=st.one_of(st.integers(-5, 10**15), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)),
  strategy=st.sampled_from(["hardest", "easiest", "random", "offset", "ccs", "probabilistic", "best"]),
  class_rule=st.sampled_from(["global", "proportional", "balanced", "drop", "fair"]),
  beta=st.floats(-1, 2),
  temperature=st.floats(allow_nan=True, allow_infinity=True),
  min_per_class=st.one_of(st.none(), st.integers(-3, 400)),
  num_strata=st.integers(-2, 300),
  seed=st.integers(0, 2**32 - 1),
  data=st.data(),
)
def test_selection_arguments_work_exactly_or_fail_cleanly(
  keep, strategy, class_rule, beta, temperature, min_per_class, num_strata, seed, data
):
  sizes = data.draw(st.lists(st.integers(0, 40), min_size=2, max_size=6).filter(lambda s: sum(s) > 0))
  labels = np.repeat(np.arange(len(sizes)), sizes)
  scores = data.draw(st.sampled_from(["distinct", "ties", "nan"]))
  values = {
    "distinct": np.random.default_rng(seed % 1000).normal(size=len(labels)),
    "ties": (np.arange(len(labels)) % 3).astype(float),
    "nan": np.where(np.arange(len(labels)) == 0, np.nan, 1.0),
  }[scores]
  manifest = toy_manifest(labels, values)
  manifest.provenance["validation"] = {
    "per_class_recall": data.draw(
      st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=len(sizes), max_size=len(sizes))
    )
  }
  try:
    subset = pruning.select(
      manifest,
      keep=keep,
      strategy=strategy,
      class_rule=class_rule,
      score="s",
      beta=beta,
      temperature=temperature,
      min_per_class=min_per_class,
      num_strata=num_strata,
      seed=seed,
    )
  except UserError as error:
    assert "\n" not in str(error)
    return
  k = pruning.selection.resolve_keep(keep, len(labels))
  kept = subset.table
  assert len(kept) == k and kept["example_id"].is_unique
  counts = np.bincount(kept["label"], minlength=len(sizes))
  assert np.all(counts <= np.asarray(sizes))
  if min_per_class is not None:
    assert np.all(counts >= np.minimum(sizes, min_per_class))
  again = pruning.select(
    manifest,
    keep=keep,
    strategy=strategy,
    class_rule=class_rule,
    score="s",
    beta=beta,
    temperature=temperature,
    min_per_class=min_per_class,
    num_strata=num_strata,
    seed=seed,
  )
  assert again.table["example_id"].tolist() == kept["example_id"].tolist()


@pytest.fixture(scope="module")
def manifest_bytes(tmp_path_factory):
  manifest = toy_manifest(np.arange(30) % 3, np.linspace(0, 1, 30))
  path = tmp_path_factory.mktemp("m") / "m.parquet"
  manifest.to_parquet(path)
  return path.read_bytes()


@FUZZ
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_truncated_or_corrupted_manifests_fail_cleanly(manifest_bytes, tmp_path, cut, flips):
  data = bytearray(manifest_bytes[: cut % (len(manifest_bytes) + 1)])
  for position, value in flips:
    if data:
      data[position % len(data)] = value
  path = tmp_path / "fuzz.parquet"
  path.write_bytes(bytes(data))
  try:
    manifest = pruning.Manifest.read_parquet(path)
  except UserError as error:
    assert "\n" not in str(error)
    return
  assert len(manifest) == 30  # damage that parsing survives left a valid manifest


@pytest.mark.parametrize(
  "change, message",
  [
    (lambda t: t.assign(label=t["label"].astype(float)), "expected integers"),
    (lambda t: t.assign(s=t["s"].astype(str)), "expected floats"),
    (lambda t: t.assign(example_id=["same"] * len(t)), "appears more than once"),
    (lambda t: t.assign(label=-t["label"] - 1), "negative labels"),
    (lambda t: t.drop(columns="s_seed0"), "missing"),
    (lambda t: t.assign(is_noisy=1), "expected booleans"),
  ],
)
def test_wrong_column_types_and_duplicate_ids_are_refused(tmp_path, change, message):
  import pyarrow as pa
  import pyarrow.parquet as pq

  manifest = toy_manifest(np.arange(30) % 3, np.linspace(0, 1, 30))
  table = pa.Table.from_pandas(change(manifest.table), preserve_index=False)
  table = table.replace_schema_metadata({b"pruning.provenance": json.dumps(manifest.provenance).encode()})
  pq.write_table(table, tmp_path / "bad.parquet")
  with pytest.raises(UserError, match=message):
    pruning.Manifest.read_parquet(tmp_path / "bad.parquet")


@FUZZ
@given(
  x=st.sampled_from(["finite", "nan", "inf", "object", "string", "1d", "empty"]),
  y=st.sampled_from(["ok", "negative", "float", "huge", "object", "2d", "short", "single"]),
)
def test_npz_files_load_or_fail_cleanly(tmp_path, x, y):
  rng = np.random.default_rng(0)
  features = {
    "finite": rng.normal(size=(20, 3)),
    "nan": np.full((20, 3), np.nan),
    "inf": np.full((20, 3), np.inf),
    "object": np.array([{"a": 1}] * 20, dtype=object),
    "string": np.full((20, 3), "a"),
    "1d": rng.normal(size=20),
    "empty": np.zeros((0, 3)),
  }[x]
  labels = {
    "ok": np.arange(20) % 2,
    "negative": -np.ones(20, int),
    "float": np.linspace(0, 1, 20),
    "huge": np.full(20, 2**40),
    "object": np.array([None] * 20, dtype=object),
    "2d": np.zeros((20, 2), int),
    "short": np.arange(5) % 2,
    "single": np.zeros(20, int),
  }[y]
  buffer = io.BytesIO()
  np.savez(buffer, x=features, y=labels)
  path = tmp_path / "f.npz"
  path.write_bytes(buffer.getvalue())
  try:
    dataset = pruning.load_dataset(f"npz:{path}", holdout=0.25)
  except UserError as error:
    assert "\n" not in str(error)
    return
  assert x == "finite" and y == "ok"
  assert np.all(np.isfinite(dataset.train.x))


def test_pickled_npz_is_refused_through_the_cli(tmp_path, capsys):
  path = tmp_path / "pickled.npz"
  np.savez(path, x=np.array([object()] * 4, dtype=object), y=np.arange(4) % 2)
  code = main(["score", "--data", f"npz:{path}", "--out", str(tmp_path / "m.parquet")])
  err = capsys.readouterr().err
  assert code == 2 and len(err.strip().splitlines()) == 1 and "pickle" in err


@FUZZ
@given(st.text(max_size=20))
def test_names_that_become_paths_never_escape_their_folder(name):
  """Class names, ids and TFDS names used as path components: refused, or a single safe component."""
  from pathlib import PurePosixPath

  from pruning.export.images import safe_file_name
  from pruning.export.tfds import TFDS_NAME

  try:
    safe = safe_file_name(name, what="name")
  except UserError as error:
    assert "\n" not in str(error)
  else:
    parts = PurePosixPath("/root/folder", safe).parts
    assert parts[:3] == ("/", "root", "folder") and len(parts) == 4 and safe not in (".", "..")
  if TFDS_NAME.fullmatch(name):
    assert "/" not in name and "." not in name and not name.startswith("_")
