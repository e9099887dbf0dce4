"""A generated fuzz run of every reader and config section, at least 1,000
inputs each: every input loads (and then is sound) or fails with one-line
`UserError`; none raises anything else, deletes a file or writes outside the
output it names."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pruning
from pruning import UserError
from pruning.cli import main
from pruning.config import load_yaml, parse_config

EXAMPLES = int(os.environ.get("PRUNING_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
  max_examples=EXAMPLES,
  deadline=None,
  derandomize=True,
  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.slow

scalars = st.one_of(
  st.none(),
  st.booleans(),
  st.integers(-(2**70), 2**70),
  st.floats(allow_nan=True),
  st.text(max_size=12),
  st.sampled_from(["../x", "a/b", "", ".", "5", "-1", "true", "50%"]),
)
values = st.recursive(
  scalars,
  lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
  max_leaves=8,
)


def fails_cleanly(error: UserError) -> None:
  assert "\n" not in str(error) and str(error)


def files(folder) -> dict[str, bytes]:
  return {
    os.path.relpath(os.path.join(p, f), folder): open(os.path.join(p, f), "rb").read()
    for p, _, names in os.walk(folder)
    for f in names
  }


def mutate(data: bytes, cut: int | None, flips) -> bytes:
  data = bytearray(data if cut is None else data[: cut % (len(data) + 1)])
  for position, value in flips:
    if data:
      data[position % len(data)] = value
  return bytes(data)


# Half the inputs keep their full length, so damage inside a complete file is tried as often as truncation.
damage = dict(
  cut=st.one_of(st.none(), st.integers(0, 10**6)),
  flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
)

SECTION_KEYS = {
  "dataset": [
    "spec",
    "label_column",
    "data_dir",
    "test_split",
    "holdout",
    "validation",
    "long_tail",
    "label_noise",
    "seed",
    "stream",
  ],
  "training": ["epochs", "batch_size", "optimizer", "learning_rate", "momentum", "weight_decay", "schedule"],
  "proxy": ["seeds", "epochs", "vog_checkpoints", "tracin_checkpoints", "keep_checkpoints"],
  "retrain": ["seeds", "budget", "include_full"],
  "sweep": ["keep"],
  "model_options": ["hidden"],
  "selections": [
    "name",
    "keep",
    "strategy",
    "class_rule",
    "score",
    "seed",
    "beta",
    "temperature",
    "weighting",
    "num_strata",
    "min_per_class",
  ],
}


@pytest.mark.parametrize("section", list(SECTION_KEYS))
def test_every_config_section_parses_or_fails_with_one_line(section):
  keys = st.one_of(st.sampled_from(SECTION_KEYS[section]), st.text(max_size=6))

  # 400 mappings a section (2,800 in all): drawing them, not parsing, is most of the time.
  @settings(FUZZ, max_examples=min(EXAMPLES, 400))
  @given(st.dictionaries(keys, values, max_size=5))
  def check(mapping):
    body = [mapping] if section == "selections" else mapping
    raw = {"name": "fuzz", section: body}
    try:
      config = parse_config(raw, source="fuzz.yaml")
    except UserError as error:
      fails_cleanly(error)
      return
    # What parses is sound: typed, path-safe names, valid seeds.
    json.dumps(config.to_dict(), default=str)
    for selection in config.selections:
      pruning.runtime.atomic.check_path_component(selection.name, what="name")
    for seed in config.proxy.seeds + config.retrain.seeds:
      assert 0 <= seed < 2**32

  check()


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_yaml_bytes_load_or_fail_with_one_line(data):
  try:
    raw = load_yaml(data.decode("utf-8", "replace"), source="fuzz.yaml")
    parse_config(raw, source="fuzz.yaml")
  except UserError as error:
    fails_cleanly(error)


@pytest.fixture(scope="module")
def npz_bytes():
  rng = np.random.default_rng(0)
  buffer = io.BytesIO()
  np.savez(
    buffer,
    x=rng.normal(size=(40, 3)).astype(np.float32),
    y=np.arange(40) % 2,
    x_test=rng.normal(size=(8, 3)),
    y_test=np.arange(8) % 2,
  )
  return buffer.getvalue()


@FUZZ
@given(**damage)
def test_damaged_npz_files_load_soundly_or_fail_with_one_line(npz_bytes, tmp_path, cut, flips):
  path = tmp_path / "f.npz"
  path.write_bytes(mutate(npz_bytes, cut, flips))
  try:
    dataset = pruning.load_dataset(f"npz:{path}")
  except UserError as error:
    fails_cleanly(error)
    return
  # A file that still loads gives exactly the arrays numpy reads from it (CRC-checked).
  with np.load(path) as archive:
    assert np.array_equal(np.asarray(dataset.train.x), archive["x"].astype(np.float32))
    assert np.array_equal(dataset.train.y, archive["y"])


@pytest.fixture(scope="module")
def parquet_bytes():
  rng = np.random.default_rng(0)
  frame = pd.DataFrame(
    {
      "age": rng.uniform(20, 70, 40),
      "income": rng.uniform(1e4, 2e5, 40),
      "label": np.where(np.arange(40) % 2, "yes", "no"),
      "example_id": [f"r{i}" for i in range(40)],
    }
  )
  table = pa.Table.from_pandas(frame, preserve_index=False)
  table = table.replace_schema_metadata({**table.schema.metadata, b"pruning.feature_shape": b"[2]"})
  buffer = io.BytesIO()
  pq.write_table(table, buffer)
  return buffer.getvalue()


@FUZZ
@given(stream=st.booleans(), **damage)
def test_damaged_parquet_tables_load_or_fail_with_one_line(parquet_bytes, tmp_path, stream, cut, flips):
  path = tmp_path / "f.parquet"
  path.write_bytes(mutate(parquet_bytes, cut, flips))
  try:
    dataset = pruning.load_dataset(f"parquet:{path}", stream=stream)
  except UserError as error:
    fails_cleanly(error)
    return
  assert np.all(np.isfinite(np.asarray(dataset.train.x)))


@pytest.fixture(scope="module")
def run_manifest(tmp_path_factory):
  from test_selection import toy_manifest

  manifest = toy_manifest(np.arange(60) % 3, np.linspace(0, 1, 60))
  path = tmp_path_factory.mktemp("m") / "m.parquet"
  manifest.to_parquet(path)
  return path.read_bytes()


@FUZZ
@given(**damage)
def test_damaged_manifests_are_refused_or_unchanged(run_manifest, tmp_path, cut, flips):
  path = tmp_path / "m.parquet"
  path.write_bytes(mutate(run_manifest, cut, flips))
  try:
    manifest = pruning.Manifest.read_parquet(path)
  except UserError as error:
    fails_cleanly(error)
    return
  # Whatever survived parsing matches the content digest: the table is the one written.
  assert len(manifest) == 60 and manifest.table["label"].tolist() == (np.arange(60) % 3).tolist()


@FUZZ
@given(
  keep=st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(max_size=5)),
  strategy=st.sampled_from(["hardest", "easiest", "random", "ccs", "offset", "probabilistic", "x"]),
  class_rule=st.sampled_from(["global", "proportional", "balanced", "drop", "y"]),
  seed=st.sampled_from(["0", "-1", str(2**32), str(2**70), "x"]),
  num_strata=st.sampled_from(["0", "1", "50", str(10**9), str(2**62)]),
  out=st.sampled_from(["s.parquet", "sub/s.parquet", "m.parquet", "file/x.parquet", "/proc/x/s.parquet", ".", "dir"]),
  overwrite=st.booleans(),
)
def test_select_from_the_cli_writes_only_its_output(
  run_manifest, tmp_path, capsys, keep, strategy, class_rule, seed, num_strata, out, overwrite
):
  for path in tmp_path.iterdir():
    if path.is_dir():
      import shutil

      shutil.rmtree(path)
    else:
      path.unlink()
  (tmp_path / "m.parquet").write_bytes(run_manifest)
  (tmp_path / "file").write_text("a user's file")
  (tmp_path / "dir").mkdir()
  before = files(tmp_path)
  target = out if out.startswith("/") else str(tmp_path / out)
  argv = [
    "select",
    str(tmp_path / "m.parquet"),
    "--keep",
    str(keep),
    "--strategy",
    strategy,
    "--class-rule",
    class_rule,
    "--seed",
    seed,
    "--num-strata",
    num_strata,
    "--score",
    "s",
    "--out",
    target,
  ]
  code = main(argv + (["--overwrite"] if overwrite else []))
  err = capsys.readouterr().err
  after = files(tmp_path)
  if code == 0:
    written = os.path.relpath(target, tmp_path)
    assert set(after) - set(before) <= {written} and all(after[k] == v for k, v in before.items() if k != written)
    pruning.Manifest.read_parquet(target)
  else:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert after == before


@pytest.fixture(scope="module")
def tokenizer_bytes():
  from pruning.data.tokenizer import TokenizerOptions, train_tokenizer

  texts = np.asarray([f"sentence {i} about films, plots and actors" for i in range(200)], dtype=object)
  options = TokenizerOptions(tokenizer="bpe", vocab_size=300, max_length=16)

  return train_tokenizer(texts, options).to_str().encode()


@settings(FUZZ, max_examples=min(EXAMPLES, 300))
@given(**damage)
def test_damaged_tokenizer_files_load_and_encode_or_fail_with_one_line(tokenizer_bytes, tmp_path, cut, flips):
  """A tokenizer.json (a checkpoint's, or a run's passed back as --tokenizer), damaged: it loads and
  encodes, or is refused in one line; a panic in the Rust library is refused too, never raised."""
  from pruning.data.tokenizer import encode, load_tokenizer

  path = tmp_path / "tokenizer.json"
  path.write_bytes(mutate(tokenizer_bytes, cut, flips))
  try:
    tokenizer = load_tokenizer(str(path))
    ids = encode(tokenizer, np.asarray(["a short sentence", "another one here"], dtype=object), max_length=8)
  except UserError as error:
    fails_cleanly(error)
    return
  assert ids.shape == (2, 8) and np.all(ids >= 0)


def _tiny_checkpoint(folder, config):
  from safetensors.numpy import save_file

  from pruning.models.pretrained import expected_tensors

  folder.mkdir(exist_ok=True)
  rng = np.random.default_rng(0)
  tensors = {name: rng.normal(size=shape).astype(np.float32) for name, shape in expected_tensors(config, 30).items()}
  save_file(tensors, str(folder / "model.safetensors"))
  (folder / "config.json").write_text(json.dumps(config))


BERT_CONFIG = {
  "model_type": "bert",
  "vocab_size": 30,
  "hidden_size": 8,
  "num_hidden_layers": 1,
  "num_attention_heads": 2,
  "intermediate_size": 8,
  "max_position_embeddings": 16,
  "type_vocab_size": 2,
  "hidden_act": "gelu",
  "layer_norm_eps": 1e-12,
}


@settings(FUZZ, max_examples=min(EXAMPLES, 300))
@given(key=st.sampled_from(sorted(BERT_CONFIG) + ["position_embedding_type"]), value=values)
def test_checkpoint_configs_build_or_fail_with_one_line(tmp_path_factory, key, value):
  """Any value for any key of a checkpoint's config.json: the encoder builds (and its config was
  sound) or the folder is refused in one line, before a weight is copied."""
  from flax import nnx

  folder = tmp_path_factory.getbasetemp() / "fuzz-checkpoint"
  _tiny_checkpoint(folder, BERT_CONFIG)
  (folder / "config.json").write_text(json.dumps({**BERT_CONFIG, key: value}, default=str))
  try:
    model = pruning.create_model("bert", input_shape=(8,), num_classes=2, rngs=nnx.Rngs(0), checkpoint=str(folder))
  except UserError as error:
    fails_cleanly(error)
    return
  assert len(model.layers) == 1


@settings(FUZZ, max_examples=min(EXAMPLES, 300))
@given(**damage)
def test_damaged_token_cache_entries_are_recomputed(tmp_path_factory, cut, flips):
  """Whatever happened to a cache entry, loading gives the token ids a fresh tokenisation gives."""
  import warnings

  root = tmp_path_factory.getbasetemp() / "fuzz-cache"
  root.mkdir(exist_ok=True)
  table = root / "s.csv"
  if not table.exists():
    pd.DataFrame({"text": [f"sentence number {i} about films" for i in range(24)], "label": np.arange(24) % 2}).to_csv(
      table, index=False
    )
  os.environ["PRUNING_CACHE_DIR"] = str(root / "cache")
  options = dict(tokenizer="bpe", vocab_size=60, max_length=8)
  reference = pruning.load_dataset(f"csv:{table}", **options)
  (entry,) = (root / "cache" / "tokens").glob("*.npz")
  entry.write_bytes(mutate(entry.read_bytes(), cut, flips))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    again = pruning.load_dataset(f"csv:{table}", **options)
  np.testing.assert_array_equal(again.train.x, reference.train.x)
