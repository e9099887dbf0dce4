"""The transformer encoder and the scores on text, against per-example references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from random_models import random_models

import pruning
from pruning.training import TrainConfig
from tests.test_grand import loop_reference

# One block holds every layer kind the checks cover (embeddings, LayerNorm, attention, feed-forward,
# pooler, head), and a block reads another tapped layer's output (the embeddings'); a second block
# only doubled every program's compile time.
SMALL = {"hidden": 16, "layers": 1, "heads": 2, "mlp": 24}


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
  """120 synthetic sentences of varied lengths, tokenised to 24 ids, with repeated tokens and padding."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PRUNING_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    data = pruning.load_dataset("synthtext", vocab_size=300, max_length=24)
  rows = np.arange(120)
  return pruning.data.make_dataset(
    "sub", data.train.take(rows), data.test.take(rows[:40]), num_classes=4, text_columns=("text",)
  ).__class__(
    **{
      **{f: getattr(data, f) for f in ("spec", "num_classes", "class_names", "text_columns", "tokenizer")},
      "train": data.train.take(rows),
      "test": data.test.take(rows[:40]),
      "normalize": "none",
      "tokenizer_json": data.tokenizer_json,
    }
  )


def _model(options=None, *, input_shape=(24,), seed=0, vocab_size=300):
  return pruning.create_model(
    "transformer",
    input_shape=input_shape,
    num_classes=4,
    rngs=nnx.Rngs(seed),
    **{**SMALL, "vocab_size": vocab_size, **(options or {})},
  )


@pytest.mark.slow
def test_padding_does_not_change_the_logits(sentences):
  """Extra padding positions are masked: the same sentence padded to 24 or 40 gives the same logits."""
  x = sentences.train.x[:8]
  longer = np.concatenate([x, np.zeros((8, 16), np.float32)], axis=1)
  model = nnx.jit(lambda model, x: model(x))  # one program per width, not one per operation
  encoder = _model(input_shape=(40,))
  np.testing.assert_allclose(model(encoder, x), model(encoder, longer), rtol=1e-5, atol=1e-5)
  changed = x.copy()
  changed[:, 1] = 7  # a real token changes: the logits do
  assert not np.allclose(model(encoder, x), model(encoder, changed), atol=1e-5)


@pytest.fixture(scope="module")
def text_models(sentences):
  return pruning.train_models(
    pruning.TrainData(x=sentences.train.x, y=sentences.train.y, num_classes=4, normalize="none"),
    pruning.ModelSpec(
      model="transformer",
      options={**SMALL, **sentences.model_options()},
      seeds=[0, 1],
      training=TrainConfig(epochs=2, batch_size=32),
    ),
    progress=False,
  )


def test_grand_on_text_takes_the_ghost_path_and_matches_a_per_example_loop(sentences):
  """Ghost norms through embeddings (repeated tokens), attention, feed-forward and LayerNorms, on
  sentences of both trimmed widths. Random weights (the rules hold for any): no training step to compile."""
  from pruning.scores.ghost_norms import supports
  from pruning.scores.grand import grand_values

  x, y = sentences.train.x[:20], sentences.train.y[:20]
  models = random_models("transformer", {**SMALL, **sentences.model_options()}, x, num_classes=4, normalize="none")
  assert len(models.width_groups(x)) == 2
  params, rest = models.state_at(None)
  first = jax.tree.map(lambda a: a[0], (params, rest))
  assert supports(models.graphdef, *first, x[:1])
  assert any(len(set(row[row > 0].tolist())) < (row > 0).sum() for row in x)  # some token repeats
  ghost = grand_values(models, x, y, method="ghost")
  np.testing.assert_allclose(ghost, loop_reference(models, x, y), rtol=2e-4, atol=1e-5)


@pytest.mark.slow
def test_el2n_and_loss_on_text_match_a_per_example_loop(sentences, text_models):
  manifest = pruning.score_proxies(
    text_models,
    sentences,
    pruning.ProxySpec(
      model="transformer",
      model_options=SMALL,
      training=TrainConfig(epochs=2, batch_size=32),
      seeds=[0, 1],
      scores=["el2n", "loss"],
    ),
    progress=False,
  )
  params, rest = text_models.state_at(None)
  el2n, loss = np.zeros((2, 120)), np.zeros((2, 120))
  for s in range(2):
    model = nnx.merge(text_models.graphdef, *jax.tree.map(lambda a: jnp.asarray(a[s]), (params, rest)))
    for i in range(120):
      logits = model(jnp.asarray(sentences.train.x[i : i + 1]))[0]
      p = jax.nn.softmax(logits)
      el2n[s, i] = float(jnp.linalg.norm(p - jax.nn.one_hot(sentences.train.y[i], 4)))
      loss[s, i] = float(optax.softmax_cross_entropy_with_integer_labels(logits, sentences.train.y[i]))
  table = manifest.table.sort_values("index")
  np.testing.assert_allclose(table["el2n"], el2n.mean(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(table["loss"], loss.mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_vog_on_text_is_the_spread_of_embedding_gradients_over_real_tokens(sentences):
  from pruning.scores.vog import VoGAccumulator

  x, y = sentences.train.x[:30], sentences.train.y[:30]
  options = {**SMALL, "vocab_size": 300}
  # Sentences of two trimmed widths: passed in groups of one width (as training trims), and all at
  # the full width (a hook that is not told the model).
  grouped = VoGAccumulator(x, y, pad_id=0, model="transformer", options=options)
  full_width = VoGAccumulator(x, y, pad_id=0)
  models = pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=4, normalize="none"),
    pruning.ModelSpec(model="transformer", options=options, seeds=[0], training=TrainConfig(epochs=3, batch_size=10)),
    checkpoint_epochs=[1, 2, 3],
    epoch_hooks=[grouped, full_width],
    progress=False,
  )
  assert len(models.width_groups(x)) == 2

  @jax.jit
  def example_grad(params, rest, xi, label):
    """d z_label / d E_tok of one example (a batch of one), compiled once."""
    model = nnx.merge(models.graphdef, params, rest)
    return jax.grad(lambda e: model(xi, token_embeddings=e)[0, label])(model.token_embeddings(xi))[0]

  expected = []
  for i in range(30):
    grads = []
    for epoch in (1, 2, 3):
      params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.state_at(epoch))
      grads.append(np.asarray(example_grad(params, rest, jnp.asarray(x[i : i + 1]), int(y[i])), np.float64))
    std = np.stack(grads).std(axis=0)  # (L, D) over the checkpoints
    real = x[i] != 0
    expected.append(std[real].mean())
  for hook in (grouped, full_width):
    np.testing.assert_allclose(hook.raw()[0], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
  ("epochs", "window", "k", "expected"),
  [
    (6, "all", None, [1, 2, 3, 4, 5, 6]),
    (6, "early", None, [1, 2, 3]),
    (6, "late", None, [4, 5, 6]),
    (7, "early", None, [1, 2, 3, 4]),
    (7, "late", None, [4, 5, 6, 7]),
    (10, "late", 2, [8, 10]),
    (10, "early", 5, [1, 2, 3, 4, 5]),
  ],
)
def test_vog_windows_read_the_epochs_they_name(epochs, window, k, expected):
  from pruning.scores.vog import checkpoint_epochs

  assert checkpoint_epochs(epochs, k, window) == expected


def test_a_vog_window_of_one_epoch_is_refused():
  with pytest.raises(pruning.UserError, match="a variance needs two"):
    pruning.ProxySpec(training=TrainConfig(epochs=2), scores=["vog"], vog_window="late")


@pytest.mark.slow
def test_a_frozen_encoder_trains_only_the_pooler_and_head(sentences):
  options = {**SMALL, **sentences.model_options(), "freeze_encoder": True}
  models = pruning.train_models(
    pruning.TrainData(x=sentences.train.x, y=sentences.train.y, num_classes=4, normalize="none"),
    pruning.ModelSpec(
      model="transformer", options=options, seeds=[0], training=TrainConfig(epochs=1, batch_size=32, weight_decay=0.1)
    ),
    checkpoint_epochs=[0],
    progress=False,
  )
  before, after = models.state_at(0), models.state_at(None)
  assert sorted({str(path[0]) for path, _ in nnx.to_flat_state(after[0])}) == ["head", "pooler"]
  for a, b in zip(jax.tree.leaves(before[1]), jax.tree.leaves(after[1])):
    assert np.array_equal(a, b)  # the encoder, weight decay included, is untouched
  # GraNd of a frozen encoder: the gradient over the trained parameters only
  from pruning.scores.grand import grand_values

  x, y = sentences.train.x[:10], sentences.train.y[:10]
  np.testing.assert_allclose(grand_values(models, x, y), loop_reference(models, x, y), rtol=2e-4, atol=1e-6)


@pytest.mark.slow
def test_sentence_pairs_use_their_token_types(tmp_path):
  from tests.test_text import write_sentences

  write_sentences(tmp_path / "p.csv", pairs=True)
  data = pruning.load_dataset(
    f"csv:{tmp_path / 'p.csv'}", text_column="text", text_pair_column="hypothesis", vocab_size=80, max_length=20
  )
  model = _model(input_shape=(2, 20), vocab_size=data.tokenizer["vocab_size"])
  x = jnp.asarray(data.train.x[:4])
  flipped = x.at[:, 1].set(jnp.where(x[:, 0] > 0, 1 - x[:, 1], 0))
  assert model(x).shape == (4, 4)
  assert not np.allclose(model(x), model(flipped), atol=1e-6)


@pytest.mark.parametrize(
  ("options", "input_shape", "match"),
  [
    ({}, (8, 8, 1), "reads token ids"),
    ({"max_positions": 16}, (24,), "above the model's 16 positions"),
    ({"hidden": 10, "heads": 3}, (24,), "not a multiple of heads"),
    ({"activation": "swish"}, (24,), "activation 'swish'"),
  ],
)
def test_bad_transformer_options_are_one_line(options, input_shape, match):
  with pytest.raises(pruning.UserError, match=match):
    _model(options, input_shape=input_shape)


def test_grouping_by_length_visits_every_example_once_and_aligns_the_seeds():
  from pruning.training import buckets
  from pruning.training.loop import _epoch_order

  rng = np.random.default_rng(0)
  n, batch = 1003, 16
  lengths = np.minimum(rng.geometric(0.05, size=n) + 3, 128)
  orders = [_epoch_order(np.random.default_rng(s), n, batch) for s in range(3)]
  grouped = buckets.group_by_length(orders, lengths, n, epoch=4)
  for before, after in zip(orders, grouped):
    assert sorted(after.reshape(-1)[:n].tolist()) == list(range(n))  # each example once
    assert np.array_equal(after[-1], before[-1])  # the short last batch stays last, padding included
  trims = buckets.trim_lengths(128)
  padded = lambda os: np.mean([buckets.step_length(max(lengths[o[k]].max() for o in os), trims) for k in range(62)])
  assert padded(grouped) < 0.5 * padded(orders)  # steps run far shorter
  again = buckets.group_by_length(orders, lengths, n, epoch=4)
  assert all(np.array_equal(a, b) for a, b in zip(grouped, again))
  assert not np.array_equal(grouped[0], buckets.group_by_length(orders, lengths, n, epoch=5)[0])


def test_trim_lengths():
  from pruning.training.buckets import sequence_lengths, trim_lengths

  assert trim_lengths(128).tolist() == [16, 24, 32, 48, 64, 96, 128]
  assert trim_lengths(20).tolist() == [16, 20]
  assert trim_lengths(8).tolist() == [8]
  ids = np.array([[2, 5, 3, 0, 0], [2, 5, 6, 7, 3], [0, 0, 0, 0, 0]], np.float32)
  assert sequence_lengths(ids, 0).tolist() == [3, 5, 1]


@pytest.mark.slow
def test_a_step_on_trimmed_padding_has_the_same_loss_and_gradient(sentences):
  """What bucketing relies on: cutting padding columns changes nothing the model computes."""
  model = _model()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  short = np.argsort((sentences.train.x != 0).sum(axis=1), kind="stable")[:16]
  x, y = jnp.asarray(sentences.train.x[short]), jnp.asarray(sentences.train.y[short])
  lengths = (np.asarray(x) != 0).sum(axis=1)
  trim = int(lengths.max())
  assert trim < x.shape[1]

  def loss(p, inputs):
    return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p, rest)(inputs), y).mean()

  step = jax.jit(jax.value_and_grad(loss))  # compiled once per shape; op by op a transformer crawls
  full_loss, full_grad = step(params, x)
  short_loss, short_grad = step(params, x[:, :trim])
  np.testing.assert_allclose(full_loss, short_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(full_grad), jax.tree.leaves(short_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_bucketed_training_is_deterministic_and_learns(sentences):
  def run():
    return pruning.train_models(
      pruning.TrainData(
        x=sentences.train.x, y=sentences.train.y, num_classes=4, normalize="none", lengths=sentences.sequence_lengths()
      ),
      pruning.ModelSpec(
        model="transformer",
        options={**SMALL, "vocab_size": 300},
        seeds=[0, 1],
        training=TrainConfig(epochs=3, batch_size=8),
      ),
      progress=False,
    )

  first, second = run(), run()
  for a, b in zip(jax.tree.leaves(first.state), jax.tree.leaves(second.state)):
    assert np.array_equal(a, b)
  assert np.all(np.asarray(first.loss_history[-1]) < np.asarray(first.loss_history[0]))


@pytest.mark.slow
def test_training_dynamics_on_text_are_the_logits_the_trimmed_step_saw(sentences):
  """One full-batch step, bucketed and trimmed: the recorded AUM margin and
  correctness are the initial model's, computed on the full-length ids."""
  from pruning.training.buckets import sequence_lengths

  x, y = sentences.train.x[:48], sentences.train.y[:48]
  models = pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=4, normalize="none", lengths=sequence_lengths(x, 0)),
    pruning.ModelSpec(
      model="transformer",
      options={**SMALL, "vocab_size": 300},
      seeds=[0, 1],
      training=TrainConfig(epochs=1, batch_size=48),
    ),
    checkpoint_epochs=[0],
    progress=False,
  )
  logits = models.logits(x, epoch=0).astype(np.float64)
  true = logits[:, np.arange(48), y]
  masked = logits.copy()
  masked[:, np.arange(48), y] = -np.inf
  np.testing.assert_allclose(models.dynamics["aum"], true - masked.max(-1), rtol=1e-4, atol=1e-5)
  assert np.array_equal(models.dynamics["forgetting"] == 1, logits.argmax(-1) != y)
