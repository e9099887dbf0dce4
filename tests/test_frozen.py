"""A pretrained encoder's frozen part computed once (`pruning.training.frozen`).

The checkpoint is a tiny BERT written here with random weights (NumPy and
`safetensors`, no download, no torch). The reference is the same model
trained with `cache_frozen: false`, which runs the frozen blocks in every
step and pass as any other model does: every score must agree.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

import pruning
from pruning.models.pretrained import expected_tensors
from pruning.scores.run import ProxySpec, score_dataset
from pruning.training import TrainConfig

SCORES = ("el2n", "loss", "aum", "forgetting", "grand", "vog_raw")


def save_random_bert(folder, *, vocab_size, layers=2, hidden=16, seed=0, pooling=None):
  """A BERT checkpoint folder with random weights (LayerNorms near scale 1)."""
  config = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "vocab_size": vocab_size,
    "hidden_size": hidden,
    "num_hidden_layers": layers,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
  }
  rng = np.random.default_rng(seed)
  tensors = {}
  for name, shape in expected_tensors(config, vocab_size).items():
    value = rng.normal(0.0, 0.2, shape).astype(np.float32)
    tensors[name] = value + 1.0 if "LayerNorm.weight" in name else value
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config))
  save_file(tensors, str(folder / "model.safetensors"))
  if pooling:
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({f"pooling_mode_{pooling}": True}))
  return folder


def _sentences(tmp_path_factory, max_length):
  """80 synthetic sentences tokenised to `max_length` ids, and a random BERT of the tokenizer's vocabulary."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PRUNING_CACHE_DIR", str(tmp_path_factory.mktemp("tokens")))
    data = pruning.load_dataset("synthtext", vocab_size=200, max_length=max_length)
  rows = np.arange(80)
  data = data.__class__(
    **{
      **{f: getattr(data, f) for f in ("spec", "num_classes", "class_names", "text_columns", "tokenizer")},
      "train": data.train.take(rows),
      "test": data.test.take(rows[:30]),
      "normalize": "none",
      "tokenizer_json": data.tokenizer_json,
    }
  )
  folder = save_random_bert(tmp_path_factory.mktemp("bert"), vocab_size=int(data.tokenizer["vocab_size"]))
  return data, folder


@pytest.fixture(scope="module")
def text(tmp_path_factory):
  """Sentences of 16 ids: one trimmed width, so each program compiles once (the fast tier)."""
  return _sentences(tmp_path_factory, 16)


@pytest.fixture(scope="module")
def long_text(tmp_path_factory):
  """Sentences of 24 ids: batches trimmed to 16 or 24, the cached states as well."""
  return _sentences(tmp_path_factory, 24)


def _manifest(data, folder, *, scores=SCORES, **options):
  spec = ProxySpec(
    model="bert",
    model_options={"checkpoint": str(folder), **options},
    training=TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3),
    seeds=2,
    scores=scores,
  )
  return score_dataset(data, spec, progress=False).table


@pytest.mark.parametrize(
  ("options", "scores"),
  [
    ({"freeze_layers": 1}, ("el2n", "aum", "forgetting", "grand")),
    # The rest of the scores, on batches and states trimmed to two widths (GraNd compiles per width: not again).
    pytest.param({"freeze_layers": 1}, ("el2n", "loss", "vog_raw"), marks=pytest.mark.slow),
    pytest.param({"freeze_layers": "all", "pooling": "mean"}, SCORES, marks=pytest.mark.slow),
  ],
)
def test_cached_frozen_states_give_the_scores_of_the_full_model(request, options, scores, tmp_path, monkeypatch):
  """Also: above `IN_MEMORY_BYTES` the states stay in the cache file and each training step and
  scoring batch reads its rows from it (flat memory on large corpora): the same batches in the same
  order, trimmed alike where positions are kept, so the same bits as states held in memory."""
  from pruning.training import frozen

  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path))
  # Token positions kept (K = 1) in the slow tier: sentences whose batches are trimmed to two widths.
  slow_positions = options.get("freeze_layers") == 1 and "vog_raw" in scores
  data, folder = request.getfixturevalue("long_text" if slow_positions else "text")
  cached = _manifest(data, folder, scores=scores, **options)
  assert len(list((tmp_path / "frozen-states").glob("*.npy"))) == 1  # the training split's states, once
  reference = _manifest(data, folder, scores=scores, **options, cache_frozen=False)
  for score in scores:
    np.testing.assert_allclose(cached[score], reference[score], rtol=2e-3, atol=2e-5, err_msg=score)
  if not request.node.get_closest_marker("slow"):
    return  # the file path compiles programs of its own: checked in the slow cases, pooled and with positions
  monkeypatch.setattr(frozen, "IN_MEMORY_BYTES", 0)
  read_by_row = _manifest(data, folder, scores=scores, **options)
  for score in scores:
    np.testing.assert_array_equal(read_by_row[score], cached[score], err_msg=score)


def test_rows_are_found_by_their_token_ids_not_only_their_hash(text, tmp_path, monkeypatch):
  """Every row hashing alike (the worst collision): each lookup still gets its own row's states."""
  from flax import nnx

  from pruning.training import frozen

  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path))
  data, folder = text
  x = data.train.x
  model = pruning.create_model(
    "bert", input_shape=x.shape[1:], num_classes=2, rngs=nnx.Rngs(0), checkpoint=str(folder), freeze_layers="all"
  )
  reference = np.stack([np.asarray(model.frozen_output(row[None]))[0] for row in x[:12]])  # one row at a time
  part = frozen.FrozenPart.for_spec(
    "bert", {"checkpoint": str(folder), "freeze_layers": "all"}, input_shape=x.shape[1:], num_classes=2
  )
  part.states(x, progress=False)
  monkeypatch.setattr(frozen, "row_hashes", lambda rows, **_: np.zeros(len(rows), np.uint64))
  order = np.array([5, 0, 11, 3, 3, 7, 1, 10, 2, 9, 4, 8, 6])
  np.testing.assert_allclose(part.lookup(x[order].copy()), reference[order], rtol=1e-5, atol=1e-6)


def test_row_hashes_tell_rows_apart():
  from pruning.training.frozen import row_hashes

  rng = np.random.default_rng(0)
  ids = rng.integers(0, 30000, (5000, 13), dtype=np.int32)  # 52 bytes a row: not a whole number of words
  ids[1] = ids[0]
  ids[2] = ids[0]
  ids[2, -1] += 1  # one id in the last, partial word
  hashes = row_hashes(ids)
  assert hashes[0] == hashes[1] != hashes[2]
  assert len(np.unique(hashes)) == len(np.unique(ids, axis=0))
  np.testing.assert_array_equal(row_hashes(ids, chunk=7), hashes)  # chunks do not change it


def test_the_cache_is_read_again_and_a_damaged_entry_is_recomputed(text, tmp_path, monkeypatch):
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path))
  data, folder = text
  stale = tmp_path / "frozen-states" / ".0123.npy.abcd.tmp"  # what a killed pass leaves (no writer holds it)
  stale.parent.mkdir()
  stale.write_bytes(b"\0" * 100)
  first = _manifest(data, folder, scores=("el2n",), freeze_layers=1)
  assert not stale.exists()
  (entry,) = (tmp_path / "frozen-states").glob("*.npy")
  stamp = entry.stat().st_mtime_ns
  again = _manifest(data, folder, scores=("el2n",), freeze_layers=1)
  assert entry.stat().st_mtime_ns == stamp  # read, not written again
  for score in ("el2n",):
    np.testing.assert_array_equal(first[score], again[score])
  with open(entry, "r+b") as handle:  # one changed value, past the header
    handle.seek(-4, os.SEEK_END)
    handle.write(np.float32(123.0).tobytes())
  with pytest.warns(UserWarning, match="unusable .*digest"):
    repaired = _manifest(data, folder, scores=("el2n",), freeze_layers=1)
  for score in ("el2n",):
    np.testing.assert_array_equal(first[score], repaired[score])


def test_a_full_disk_is_one_line_and_leaves_no_entry(text, tmp_path, monkeypatch):
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path))
  data, folder = text

  def full(descriptor, offset, length):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "posix_fallocate", full)
  with pytest.raises(pruning.UserError, match="no room for the frozen encoder's states .*PRUNING_CACHE_DIR"):
    _manifest(data, folder, freeze_layers=1)
  assert not [p for p in (tmp_path / "frozen-states").iterdir()]


def test_freezing_beyond_the_depth_is_refused(text):
  data, folder = text
  with pytest.raises(pruning.UserError, match="freeze_layers 3 is beyond the model's 2 blocks"):
    _manifest(data, folder, freeze_layers=3)
  with pytest.raises(pruning.UserError, match="freeze_layers must be a whole number"):
    _manifest(data, folder, freeze_layers="some")


def test_a_sentence_transformers_folder_sets_mean_pooling(tmp_path):
  from flax import nnx

  folder = save_random_bert(tmp_path / "st", vocab_size=60, pooling="mean_tokens")
  model = pruning.create_model("bert", input_shape=(12,), num_classes=2, rngs=nnx.Rngs(0), checkpoint=str(folder))
  assert model.pooling == "mean" and model.pooler is None
  ids = np.zeros((2, 12), np.float32)
  ids[:, :5] = np.arange(2, 7)
  h, mask = model.encode(ids)
  expected = (np.asarray(h) * np.asarray(mask)[..., None]).sum(1) / np.asarray(mask).sum(1, keepdims=True)
  np.testing.assert_allclose(model.features(ids), expected, rtol=1e-5, atol=1e-6)


def test_freeze_encoder_is_every_block_frozen():
  from pruning.models.transformer import frozen_depth

  assert frozen_depth(0, True, 6) == frozen_depth("all", False, 6) == 6
  with pytest.raises(pruning.UserError, match="freeze_encoder and freeze_layers 2 disagree"):
    frozen_depth(2, True, 6)
