"""Training-time remedies for class imbalance, each against an independent computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx
from sklearn.utils.class_weight import compute_class_weight

import pruning
from pruning.errors import UserError
from pruning.retraining.remedies import REMEDIES, RemedyOptions, effective_number_weights, log_prior
from pruning.training import ClassBalance, TrainConfig, build_train_step, init_models, train_step_programs


@pytest.fixture(scope="module")
def long_tail():
  return pruning.load_dataset("digits", long_tail=20)


def _prepare(name, dataset, **options):
  rows = np.arange(len(dataset.train))
  normalizer = pruning.Normalizer.fit(dataset.train.x)
  plan = REMEDIES[name].prepare(
    dataset.train.x,
    dataset.train.y,
    rows,
    num_classes=dataset.num_classes,
    normalizer=normalizer,
    options=RemedyOptions(**options),
  )
  return plan, normalizer


def test_reweight_is_scikit_learns_balanced_weights_and_cuis_effective_number(long_tail):
  plan, _ = _prepare("reweight", long_tail)
  y = long_tail.train.y
  expected = compute_class_weight("balanced", classes=np.arange(10), y=y)  # N / (C n_c)
  np.testing.assert_allclose(plan.balance.class_weights, expected, rtol=1e-12)
  assert np.mean(np.asarray(plan.balance.class_weights)[y]) == pytest.approx(1.0)
  plan, _ = _prepare("reweight", long_tail, beta=0.99)
  counts = np.bincount(y, minlength=10)
  raw = (1 - 0.99) / (1 - 0.99**counts)
  np.testing.assert_allclose(plan.balance.class_weights, raw / np.mean(raw[y]), rtol=1e-12)
  np.testing.assert_allclose(effective_number_weights(counts, 0.0), np.ones(10))  # beta 0: no reweighting


@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
def test_oversampled_batches_follow_the_class_frequencies_the_power_sets(long_tail, power):
  plan, _ = _prepare("oversample", long_tail, sampling_power=power)
  labels = long_tail.train.y
  counts = np.bincount(labels, minlength=10)
  rng = np.random.default_rng(0)
  drawn = np.concatenate([labels[plan.balance.epoch_positions(rng, labels)] for _ in range(200)])
  observed = np.bincount(drawn, minlength=10) / len(drawn)
  expected = {
    1.0: np.full(10, 0.1),  # balanced: every class equally often
    0.5: np.sqrt(counts) / np.sqrt(counts).sum(),  # square-root sampling
    0.0: counts / counts.sum(),  # the natural frequencies
  }[power]
  # 200 epochs of ~500 draws: a class's share has a standard error under 0.003.
  np.testing.assert_allclose(observed, expected, atol=0.01)


def test_undersampled_epochs_take_the_smallest_class_size_of_every_class_once(long_tail):
  plan, _ = _prepare("undersample", long_tail)
  labels = long_tail.train.y
  positions = plan.balance.epoch_positions(np.random.default_rng(1), labels)
  smallest = np.bincount(labels).min()
  assert np.array_equal(np.bincount(labels[positions]), np.full(10, smallest))
  assert len(set(positions.tolist())) == len(positions)  # without replacement


def test_the_logit_adjusted_step_is_gradient_descent_on_the_adjusted_loss(long_tail):
  """One SGD step through `build_train_step` with the offset equals jax.grad of CE(logits + tau log prior)."""
  offset = tuple(float(v) for v in 1.0 * log_prior(np.bincount(long_tail.train.y, minlength=10)))
  config = TrainConfig(optimizer="sgd", momentum=0.0, learning_rate=0.5, batch_size=32)
  x = pruning.Normalizer.fit(long_tail.train.x)(long_tail.train.x)[:32]
  y = long_tail.train.y[:32].astype(np.int32)
  graphdef, (params, rest) = init_models("linear", {}, input_shape=x.shape[1:], num_classes=10, seeds=[0])
  step = build_train_step(
    graphdef, config, 10, gathered=False, seed_map="vmap", mesh=None, batch=32, micro=None, logit_offset=offset
  )
  _, init = train_step_programs(graphdef, config, 10, False, "vmap", offset)
  idx, w = np.arange(32, dtype=np.int32)[None], np.ones((1, 32), np.float32)
  first = jax.tree.map(lambda a: jnp.asarray(np.array(a[0])), params)  # a copy: the step donates its inputs
  new_params, *_ = step(params, rest, init(params), jnp.asarray(x), jnp.asarray(y), idx, w)

  def loss(p):
    logits = nnx.merge(graphdef, p, jax.tree.map(lambda a: a[0], rest))(jnp.asarray(x)) + jnp.asarray(offset)
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()

  expected = jax.tree.map(lambda p, g: p - 0.5 * g, first, jax.grad(loss)(first))
  for got, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(got)[0], np.asarray(want), rtol=1e-5, atol=1e-6)


def test_threshold_predicts_from_the_logits_minus_tau_log_prior(long_tail):
  config = TrainConfig(epochs=2, batch_size=64)
  result = pruning.retrain(
    long_tail,
    None,
    spec=pruning.ModelSpec(model="linear", training=config, seeds=[0]),
    remedy="threshold",
    remedy_options={"tau": 0.7},
    progress=False,
  )
  logits = result.models.logits(long_tail.test.x)[0]
  prior = np.bincount(long_tail.train.y, minlength=10) / len(long_tail.train)
  predictions = np.argmax(logits - 0.7 * np.log(prior), axis=-1)
  assert result.per_seed["accuracy"][0] == pytest.approx(np.mean(predictions == long_tail.test.y))
  plain = pruning.retrain(
    long_tail, None, spec=pruning.ModelSpec(model="linear", training=config, seeds=[0]), progress=False
  )
  np.testing.assert_array_equal(plain.models.logits(long_tail.test.x), result.models.logits(long_tail.test.x))


def test_smote_trains_on_imbalanced_learns_rows(long_tail):
  from imblearn.over_sampling import SMOTE

  plan, normalizer = _prepare("smote", long_tail, k_neighbors=3, seed=7)
  flat = normalizer(long_tail.train.x).reshape(len(long_tail.train), -1)
  x_ref, y_ref = SMOTE(k_neighbors=3, random_state=7).fit_resample(flat, long_tail.train.y)
  np.testing.assert_array_equal(plan.x.reshape(len(plan.x), -1), x_ref.astype(np.float32))
  np.testing.assert_array_equal(plan.y, y_ref)
  assert plan.synthetic == len(y_ref) - len(long_tail.train) > 0
  assert np.array_equal(np.bincount(plan.y), np.full(10, np.bincount(long_tail.train.y).max()))


@pytest.mark.slow
def test_every_remedy_keeps_the_step_budget_and_records_itself(long_tail):
  config = TrainConfig(epochs=2, batch_size=64)
  steps = set()
  for name in ("none", "oversample", "undersample", "reweight", "logit_adjust", "threshold", "smote"):
    options = {"k_neighbors": 3} if name == "smote" else {}
    result = pruning.retrain(
      long_tail,
      None,
      spec=pruning.ModelSpec(model="linear", training=config, seeds=[0]),
      remedy=name,
      remedy_options=options,
      progress=False,
    )
    steps.add(result.num_steps)
    assert result.summary()["remedy"] == name
  assert len(steps) == 1


def test_remedies_from_yaml_and_bad_remedies_in_one_line(tmp_path, capsys):
  from pruning.cli import main

  config = pruning.parse_config(
    {"name": "r", "retrain": {"remedy": "oversample", "remedy_options": {"sampling_power": 0.5}}}, source="test"
  )
  assert config.retrain.remedy == "oversample" and config.retrain.remedy_options == {"sampling_power": 0.5}
  for bad, message in (
    ({"remedy": "oversampel"}, "did you mean 'oversample'"),
    ({"remedy": "reweight", "remedy_options": {"betta": 0.9}}, "did you mean 'beta'"),
    ({"remedy": "logit_adjust", "remedy_options": {"tau": -1}}, "tau"),
  ):
    with pytest.raises(UserError, match=message):
      pruning.parse_config({"name": "r", "retrain": bad}, source="test")
  base = ["train", "--data", "digits", "--long-tail", "50", "--epochs", "1", "--seeds", "1", "--no-progress"]
  for flags, message in (
    (["--remedy", "smote", "--k-neighbors", "30"], "k_neighbors"),
    (["--remedy", "reweight", "--beta", "1.5"], "beta"),
    (["--remedy", "oversample", "--sampling-power", "2"], "sampling_power"),
  ):
    capsys.readouterr()
    assert main([*base, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
  with pytest.raises(UserError, match="training dynamics"):
    pruning.train_models(
      pruning.TrainData(
        x=np.zeros((20, 2), np.float32),
        y=np.arange(20) % 2,
        num_classes=2,
        balance=ClassBalance(sampling="undersample"),
      ),
      pruning.ModelSpec(model="linear", seeds=[0], training=TrainConfig(epochs=1)),
      progress=False,
    )


def test_per_class_metrics_match_counts_and_the_rank_formula():
  """Precision and recall from confusion counts, AUROC as the Mann-Whitney probability of ranking a positive higher."""
  from pruning.evaluation import per_class_metrics, softmax

  rng = np.random.default_rng(3)
  y = rng.integers(0, 3, 200)
  logits = rng.normal(size=(1, 200, 3)) + 1.5 * np.eye(3)[y][None]
  table = per_class_metrics(y, logits, num_classes=3)
  predicted = logits[0].argmax(-1)
  probabilities = softmax(logits[0])
  for c in range(3):
    tp = np.sum((predicted == c) & (y == c))
    assert table["precision"][c] == pytest.approx(tp / np.sum(predicted == c))
    assert table["recall"][c] == pytest.approx(tp / np.sum(y == c))
    positive, negative = probabilities[y == c, c], probabilities[y != c, c]
    wins = (positive[:, None] > negative[None, :]).mean() + 0.5 * (positive[:, None] == negative[None, :]).mean()
    assert table["auroc"][c] == pytest.approx(wins)
    assert table["prevalence"][c] == pytest.approx(np.mean(y == c))


@pytest.mark.slow
def test_train_writes_roc_pr_and_confusion_figures_and_runs_write_per_class_tables(long_tail, tmp_path, capsys):
  from pruning.cli import main

  base = ["train", "--data", "digits", "--long-tail", "20", "--epochs", "1", "--seeds", "1", "--no-progress"]
  assert main([*base, "--remedy", "oversample", "--figures", str(tmp_path / "figs")]) == 0
  for name in ("roc.png", "pr.png", "confusion.png"):
    assert (tmp_path / "figs" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "Per class" in capsys.readouterr().out
  config = pruning.parse_config(
    {
      "name": "pc",
      "model": "linear",
      "dataset": {"spec": "digits", "long_tail": 20},
      "training": {"epochs": 1, "batch_size": 256},
      "proxy": {"seeds": [0]},
      "selections": [{"name": "half", "keep": 0.5, "strategy": "random", "class_rule": "balanced"}],
      "retrain": {"seeds": [0], "remedy": "reweight"},
    }
  )
  run = pruning.run_pipeline(config, output_dir=tmp_path / "run", progress=False, log=lambda line: None)
  table = pd.read_csv(tmp_path / "run" / "per_class.csv")
  assert list(table["arm"].unique()) == ["full", "half"] and len(table) == 20
  assert run.summary()["remedy"].tolist() == ["reweight", "reweight"]


@pytest.mark.slow
def test_smote_in_feature_space_refits_only_the_head():
  import jax

  dataset = pruning.load_dataset("tabular:20")
  config = TrainConfig(epochs=2, batch_size=128)
  plain = pruning.retrain(
    dataset, None, spec=pruning.ModelSpec(model="mlp", training=config, seeds=[0]), progress=False
  )
  smoted = pruning.retrain(
    dataset,
    None,
    spec=pruning.ModelSpec(model="mlp", training=config, seeds=[0]),
    remedy="smote",
    remedy_options={"space": "features", "head_epochs": 3},
    progress=False,
  )
  # The body is the model trained without a remedy, bit for bit; only the head moved.
  params_plain, params_smoted = plain.models.state[0], smoted.models.state[0]
  for path in ("hidden", "head"):
    a = jax.tree.leaves(params_plain[path])
    b = jax.tree.leaves(params_smoted[path])
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) == (path == "hidden")
  counts = np.bincount(dataset.train.y)
  assert smoted.synthetic == counts.max() - counts.min()  # SMOTE's default: the minority up to the majority
  assert smoted.summary()["worst_class_recall"] > plain.summary()["worst_class_recall"]


def test_feature_space_smote_needs_a_model_with_features_and_a_head(long_tail):
  class Bare(nnx.Module):
    def __init__(self, *, input_shape, num_classes, rngs):
      self.dense = nnx.Linear(int(np.prod(input_shape)), num_classes, rngs=rngs)

    def __call__(self, x):
      return self.dense(x.reshape(len(x), -1))

  pruning.register_model("bare_test", Bare)
  try:
    with pytest.raises(UserError, match="features\\(x\\)"):
      pruning.retrain(
        long_tail,
        None,
        spec=pruning.ModelSpec(model="bare_test", training=TrainConfig(epochs=1), seeds=[0]),
        remedy="smote",
        remedy_options={"space": "features", "k_neighbors": 3},
        progress=False,
      )
  finally:
    pruning.MODELS.unregister("bare_test")


def test_smote_on_one_hot_columns_is_smotenc_and_keeps_categories_whole(tmp_path):
  """SMOTE once interpolated --categorical onehot columns into fractions of a category;
  synthetic rows now carry one whole category per column, as imbalanced-learn's SMOTENC gives."""
  from imblearn.over_sampling import SMOTENC

  from pruning.data.normalization import Normalizer
  from pruning.retraining import REMEDIES, RemedyOptions

  rng = np.random.default_rng(0)
  n = 220
  label = (np.arange(n) % 11 == 0).astype(int)  # 10:1
  frame = pd.DataFrame(
    {
      "amount": rng.normal(size=n) * 1000 + label * 800,
      "age": rng.integers(18, 90, size=n).astype(float),
      "plan": rng.choice(["basic", "pro", "team"], size=n),
      "label": label,
    }
  )
  frame.to_csv(tmp_path / "t.csv", index=False)
  dataset = pruning.load_dataset(f"csv:{tmp_path / 't.csv'}", categorical="onehot", holdout=0.2)
  columns = dataset.feature_columns
  assert columns == ("amount", "age", "plan=basic", "plan=pro", "plan=team")
  normalizer = Normalizer.fit(dataset.train.x, mode=dataset.normalize)
  rows = np.arange(len(dataset.train))
  options = RemedyOptions(k_neighbors=3, seed=0)
  plan = REMEDIES.get("smote").prepare(
    dataset.train.x,
    dataset.train.y,
    rows,
    num_classes=2,
    normalizer=normalizer,
    options=options,
    feature_columns=columns,
  )
  zero = normalizer(np.zeros((1, 5), np.float32))[0]
  one = normalizer(np.ones((1, 5), np.float32))[0]
  onehot = (plan.x[:, 2:] - zero[2:]) / (one[2:] - zero[2:])
  np.testing.assert_allclose(onehot, np.round(onehot), atol=1e-5)  # whole categories only
  np.testing.assert_allclose(onehot.sum(axis=1), 1.0, atol=1e-5)
  counts = np.bincount(dataset.train.y)
  assert plan.synthetic == counts.max() - counts.min() > 0
  # The library's own SMOTENC on the same rows: the same synthetic rows.
  flat = np.asarray(normalizer(dataset.train.x), np.float32)
  reduced = np.concatenate([flat[:, :2], dataset.train.x[:, 2:].argmax(axis=1, keepdims=True)], axis=1)
  expected, _ = SMOTENC(categorical_features=[2], k_neighbors=3, random_state=0).fit_resample(
    reduced.astype(np.float64), dataset.train.y
  )
  np.testing.assert_allclose(plan.x[:, :2], expected[:, :2], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(onehot.argmax(axis=1), expected[:, 2].astype(int))
  for other in ("borderline_smote", "adasyn"):
    with pytest.raises(pruning.UserError, match="would interpolate the one-hot encoded columns \\(plan\\)"):
      REMEDIES.get(other).prepare(
        dataset.train.x,
        dataset.train.y,
        rows,
        num_classes=2,
        normalizer=normalizer,
        options=options,
        feature_columns=columns,
      )
