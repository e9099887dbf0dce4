"""TracIn against a per-example `jax.grad` loop: train-to-test influence (exact and projected),
self-influence and influence on a held-out split, and `pruning influence` from the command line."""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx
from random_models import random_models

import pruning
from pruning.scores import compute_scores
from pruning.scores.tracin import epoch_learning_rates, influence_matrix, tracin_epochs
from pruning.training import TrainConfig

EPOCHS, RATES = [1, 2], [0.5, 0.25]


def per_example_gradients(models, x, y, *, epoch, seed, only=None) -> np.ndarray:
  """(N, P) every example's full gradient (`only`: of that top-level layer), one `jax.grad` call each, in float64."""
  params, rest = jax.tree.map(lambda a: jnp.asarray(a[seed]), models.state_at(epoch))
  inputs = models.normalizer(x)

  def loss(p, xi, yi):
    return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(models.graphdef, p, rest)(xi), yi)[0]

  grad = jax.jit(jax.grad(loss))
  rows = []
  for i in range(len(y)):
    grads = nnx.to_pure_dict(grad(params, jnp.asarray(inputs[i : i + 1]), jnp.asarray(y[i : i + 1])))
    leaves = jax.tree.leaves(grads if only is None else grads[only])
    rows.append(np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in leaves]))
  return np.stack(rows)


def reference_influence(models, train, test, epochs=EPOCHS, rates=RATES, only=None) -> np.ndarray:
  """sum_k eta_k <g_i, g_j>, averaged over seeds, from materialised gradients."""
  total = 0.0
  for epoch, rate in zip(epochs, rates):
    for seed in range(len(models.seeds)):
      g_train = per_example_gradients(models, *train, epoch=epoch, seed=seed, only=only)
      g_test = per_example_gradients(models, *test, epoch=epoch, seed=seed, only=only)
      total = total + rate * g_train @ g_test.T / len(models.seeds)
  return total


CASES = {
  "mlp": ("mlp", {"hidden": [16, 8]}),  # one position: the factored (a.a')(g.g') form
  "cnn_patches": ("cnn", {"channels": [4, 6], "dense": 12}),  # few channels: im2col patches
  "cnn_offsets": ("cnn", {"channels": [8, 8], "dense": 12}),  # one product per kernel offset
}


@pytest.fixture(scope="module")
def image_models(digits):
  x, y = digits.train.x[:40], digits.train.y[:40]

  class Models(dict):
    def __missing__(self, case):
      name, options = CASES[case]
      self[case] = random_models(name, options, x, num_classes=10, epochs=EPOCHS)
      return self[case]

  class References(dict):  # materialised-gradient TracIn of (model, layers), computed once
    def __missing__(self, key):
      case, only = key
      self[key] = reference_influence(models[case], (x[:30], y[:30]), (x[30:36], y[30:36]), only=only)
      return self[key]

  models = Models()
  return (x[:30], y[:30]), (x[30:36], y[30:36]), models, References()


@pytest.mark.parametrize("case", list(CASES))
def test_exact_influence_matches_materialised_gradients(image_models, case):
  train, test, models, references = image_models
  # A small memory budget splits the test set into chunks, each a pass over the training data; a
  # training batch of 40 rows is more than one step of the convolutions' blocks (16 rows), the last padded.
  ours = influence_matrix(
    models[case], *train, *test, epochs=EPOCHS, learning_rates=RATES, memory_bytes=12_000, train_batch=40
  )
  reference = references[case, None]
  np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


@pytest.fixture(scope="module")
def text_models():
  data = pruning.load_dataset("synthtext", vocab_size=128, max_length=24)
  part = data.train.take(np.arange(48))
  options = pruning.ModelSpec(model="transformer", options={"hidden": 16, "mlp": 32, "layers": 1, "heads": 2})
  options = options.for_data(data).options
  # One seed and checkpoint (the image models check the sums over both): fewer reference gradients.
  models = random_models(
    "transformer", options, part.x, num_classes=data.num_classes, seeds=[0], epochs=[1], normalize="none"
  )
  return part.x, part.y, models


def test_exact_influence_on_text_with_padding_and_two_widths(text_models):
  """Embeddings (repeated ids, positions), attention, LayerNorm; sentences trimmed to 16 or 24 ids."""
  x, y, models = text_models
  assert len(models.width_groups(x)) == 2
  train, test = (x[:28], y[:28]), (x[40:48], y[40:48])
  ours = influence_matrix(models, *train, *test, epochs=[1], learning_rates=[0.5])
  reference = reference_influence(models, train, test, epochs=[1], rates=[0.5])
  np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


@pytest.mark.slow
def test_projected_influence_on_text_keeps_the_ranking(text_models):
  """LoGra on a transformer: 8 dimensions a side (embedding rows projected too), against exact."""
  x, y, models = text_models
  train, test = (x[:28], y[:28]), (x[40:48], y[40:48])
  reference = influence_matrix(models, *train, *test, epochs=[1], learning_rates=[0.5])
  projected = influence_matrix(models, *train, *test, epochs=[1], learning_rates=[0.5], projection=8)
  assert np.corrcoef(projected.ravel(), reference.ravel())[0, 1] > 0.9
  # Through the inverse Fisher: the same features, over both trimmed widths, solved by NumPy.
  from pruning.scores import ghost_products as products
  from pruning.scores.fisher_influence import projected_features

  params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), models.state_at(1))
  projections = products.projection_matrices(models.graphdef, params, rest, test[0][:1], test[1][:1], 8)
  phi = [projected_features(models, *split, epoch=1, seed=0, projections=projections) for split in (train, test)]
  np.testing.assert_allclose(phi[0] @ phi[1].T, projected / 0.5, rtol=1e-3, atol=1e-4 * np.abs(projected).max())
  fisher = phi[0].astype(np.float64).T @ phi[0] / len(phi[0])
  expected = 0.5 * phi[0] @ np.linalg.solve(fisher + np.trace(fisher) / len(fisher) * np.eye(len(fisher)), phi[1].T)
  ours = influence_matrix(models, *train, *test, epochs=[1], learning_rates=[0.5], projection=8, damping=1.0)
  np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_a_test_example_too_big_for_the_memory_allowed_names_the_projection(image_models):
  train, test, models, _ = image_models
  with pytest.raises(pruning.UserError, match=r"gradient takes .* allowed: project it \(--projection"):
    influence_matrix(models["cnn_offsets"], *train, *test, epochs=[1], learning_rates=[1.0], memory_bytes=64)


def test_projection_wider_than_every_layer_is_exact(image_models):
  """A projection of more dimensions than a layer has keeps that layer as it is: no approximation."""
  train, test, models, references = image_models
  exact = influence_matrix(models["mlp"], *train, *test, epochs=EPOCHS, learning_rates=RATES)
  wide = influence_matrix(models["mlp"], *train, *test, epochs=EPOCHS, learning_rates=RATES, projection=4096)
  np.testing.assert_allclose(wide, exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())
  # Last-layer TracIn (Captum's TracInCPFast): the head's parameters only.
  head = influence_matrix(models["mlp"], *train, *test, epochs=EPOCHS, learning_rates=RATES, layers=("head",))
  head_reference = references["mlp", "head"]
  np.testing.assert_allclose(head, head_reference, rtol=1e-4, atol=1e-5 * np.abs(head_reference).max())


def fisher_reference(models, train, test, damping, epochs=EPOCHS, rates=RATES) -> np.ndarray:
  """sum_k eta_k g_i^T (F_k + lambda_k I)^{-1} g_j from materialised full gradients, in float64:
  F_k their (P, P) mean outer product, lambda_k = damping * trace(F_k) / P."""
  total = 0.0
  for epoch, rate in zip(epochs, rates):
    for seed in range(len(models.seeds)):
      g_train = per_example_gradients(models, *train, epoch=epoch, seed=seed)
      g_test = per_example_gradients(models, *test, epoch=epoch, seed=seed)
      fisher = g_train.T @ g_train / len(g_train)
      shifted = fisher + damping * np.trace(fisher) / len(fisher) * np.eye(len(fisher))
      total = total + rate * g_train @ np.linalg.solve(shifted, g_test.T) / len(models.seeds)
  return total


@pytest.mark.parametrize("damping", [0.01, 1.0])
def test_fisher_preconditioned_influence_matches_the_inverse_of_materialised_gradients(image_models, damping):
  """A projection wider than every layer keeps the whole gradient, so the preconditioned
  influence is the closed form over every parameter (1,266 of them, 30 training examples: the
  Fisher is singular and the damping is what makes it invertible)."""
  train, test, models, _ = image_models
  ours = influence_matrix(
    models["mlp"], *train, *test, epochs=EPOCHS, learning_rates=RATES, projection=4096, damping=damping
  )
  reference = fisher_reference(models["mlp"], train, test, damping)
  np.testing.assert_allclose(ours, reference, rtol=2e-3, atol=2e-4 * np.abs(reference).max())


def test_narrow_fisher_features_are_the_projected_gradients(image_models):
  """With a narrow projection: the features' inner products are projected TracIn, and the
  preconditioned values are the damped inverse of their Fisher, solved here with NumPy."""
  from pruning.scores import ghost_products as products
  from pruning.scores.fisher_influence import projected_features

  train, test, models, _ = image_models
  model = models["cnn_patches"]
  params, rest = jax.tree.map(lambda a: jnp.asarray(a[0]), model.state_at(1))
  inputs = model.normalizer(test[0][:1])
  projections = products.projection_matrices(model.graphdef, params, rest, inputs, test[1][:1], 8)
  phi = {
    name: projected_features(model, *split, epoch=1, seed=0, projections=projections)
    for name, split in (("train", train), ("test", test))
  }
  first = lambda tree: jax.tree.map(lambda a: a[:1], tree)  # noqa: E731
  single = dataclasses.replace(
    model, seeds=model.seeds[:1], state=first(model.state), checkpoints={1: first(model.checkpoints[1])}
  )
  projected = influence_matrix(single, *train, *test, epochs=[1], learning_rates=[1.0], projection=8)
  gram = phi["train"].astype(np.float64) @ phi["test"].T
  np.testing.assert_allclose(gram, projected, rtol=1e-4, atol=1e-5 * np.abs(projected).max())
  fisher = phi["train"].astype(np.float64).T @ phi["train"] / len(phi["train"])
  shifted = fisher + 0.1 * np.trace(fisher) / len(fisher) * np.eye(len(fisher))
  expected = phi["train"] @ np.linalg.solve(shifted, phi["test"].T.astype(np.float64))
  ours = influence_matrix(single, *train, *test, epochs=[1], learning_rates=[1.0], projection=8, damping=0.1)
  np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
  with pytest.raises(pruning.UserError, match="needs a projection"):
    influence_matrix(single, *train, *test, epochs=[1], learning_rates=[1.0], damping=0.1)
  with pytest.raises(pruning.UserError, match="a number > 0"):
    influence_matrix(single, *train, *test, epochs=[1], learning_rates=[1.0], projection=8, damping=0.0)


@pytest.mark.slow
def test_narrow_projections_approach_exact_as_they_widen(image_models):
  train, test, models, references = image_models
  reference = references["cnn_patches", None]
  agreement = [
    np.corrcoef(
      influence_matrix(models["cnn_patches"], *train, *test, epochs=EPOCHS, learning_rates=RATES, projection=k).ravel(),
      reference.ravel(),
    )[0, 1]
    for k in (4, 16)
  ]
  assert agreement[0] < agreement[1] and agreement[1] > 0.95, agreement


def test_tracin_scores_match_the_gradient_loop(digits):
  """tracin_self = sum_k eta_k ||g_i||^2; tracin_test = sum_k eta_k <g_i, sum_j g_j> over the validation split."""
  data = dataclasses.replace(
    digits, train=digits.train.take(np.arange(48)), validation=digits.test.take(np.arange(10)), test=None
  )
  spec = pruning.ProxySpec(
    model="mlp",
    model_options={"hidden": [12]},
    training=TrainConfig(epochs=4, batch_size=16, schedule="linear"),
    seeds=2,
    scores=["tracin_self", "tracin_test"],
    tracin_checkpoints=2,
  )
  models = pruning.train_proxies(data, spec, progress=False)
  values = compute_scores(models, data.train.x, data.train.y, spec.scores, progress=False)
  epochs = tracin_epochs(4, 2)
  assert epochs == [2, 4]
  rates = epoch_learning_rates(spec.training, models.num_steps, epochs)
  assert rates[0] > rates[1] > 0  # linear decay: each epoch's mean rate, the last one not 0
  self_reference = np.zeros((2, 48))
  test_reference = np.zeros((2, 48))
  for epoch, rate in zip(epochs, rates):
    for seed in range(2):
      g_train = per_example_gradients(models, data.train.x, data.train.y, epoch=epoch, seed=seed)
      g_test = per_example_gradients(models, data.validation.x, data.validation.y, epoch=epoch, seed=seed)
      self_reference[seed] += rate * np.sum(g_train**2, axis=1)
      test_reference[seed] += rate * g_train @ g_test.sum(axis=0)
  np.testing.assert_allclose(values["tracin_self"], self_reference, rtol=1e-4)
  np.testing.assert_allclose(values["tracin_test"], test_reference, rtol=1e-4, atol=1e-4 * np.abs(test_reference).max())


def test_tracin_test_without_a_held_out_split_is_refused_before_training(digits):
  data = dataclasses.replace(digits, test=None, validation=None)
  with pytest.raises(pruning.UserError, match="--validation 0.1"):
    pruning.train_proxies(data, pruning.ProxySpec(model="linear", scores=["tracin_test"]), progress=False)
  with pytest.raises(pruning.UserError, match="TracIn checkpoints"):
    pruning.ProxySpec(model="linear", scores=["tracin_self"], tracin_checkpoints=0)


@pytest.mark.slow
def test_influence_from_the_command_line(tmp_path, capsys, digits):
  from pruning.cli import main

  manifest = tmp_path / "m.parquet"
  score = ["score", "--data", "digits", "--model", "mlp", "--model-option", "hidden=[16]", "--epochs", "2"]
  assert main([*score, "--seeds", "2", "--score", "el2n", "--out", str(manifest), "--no-progress"]) == 0
  out, totals = tmp_path / "influence.parquet", tmp_path / "totals.csv"
  capsys.readouterr()
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the proxies trained again must be the scored ones: no warning
    args = ["influence", str(manifest), "--top", "3", "--out", str(out), "--totals", str(totals), "--no-progress"]
    assert main(args) == 0
  printed = capsys.readouterr().out
  table = pd.read_parquet(out)
  assert set(table["direction"]) == {"proponent", "opponent"}
  first = table.groupby("test_id").first()
  assert len(first) >= 1 and (first["test_prediction"] != first["test_label"]).all()  # the proxies' errors
  assert f"of {len(first)} test examples" in printed
  assert "trained again for their TracIn checkpoints" in printed  # scored without --keep-checkpoints
  for (_, direction), group in table.groupby(["test_id", "direction"]):
    assert group["rank"].tolist() == [1, 2, 3]
    steps = np.diff(group["influence"].to_numpy())
    assert np.all(steps <= 0) if direction == "proponent" else np.all(steps >= 0)
  summed = pd.read_csv(totals)
  assert len(summed) == len(digits.train) and list(summed.columns) == ["example_id", "influence"]
  fisher = tmp_path / "fisher.csv"
  args = ["influence", str(manifest), "--projection", "8", "--fisher-damping", "0.1", "--out", str(fisher)]
  assert main([*args, "--top", "3", "--no-progress"]) == 0
  assert "through the inverse Fisher damped by 0.1" in capsys.readouterr().out
  assert pd.read_csv(fisher)["test_id"].nunique() == len(first)  # the same errors explained
  # Bad input: one line each, exit 2, nothing written.
  for args, message in [
    (["--test", "digits-1,nope"], "test ids not in the split"),
    (["--top", "100000"], "--top 100000"),
    (["--split", "validation"], "no validation split"),
    (["--projection", "0"], "--projection 0"),
    (["--fisher-damping", "0.1"], "needs a projection"),
    (["--projection", "8", "--fisher-damping", "-1"], "a number > 0"),
  ]:
    assert main(["influence", str(manifest), *args, "--out", str(tmp_path / "bad.parquet")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad.parquet").exists()


@pytest.mark.slow
def test_kept_checkpoints_are_read_not_trained_again(digits, monkeypatch):
  """A score job with `keep_checkpoints` keeps the TracIn checkpoints; `explain` then reads them,
  training no step, and finds the influence of proxies trained again (the reference) bit for bit.
  A damaged entry, or one recording another run, is discarded with a warning and trained again."""
  import json

  from pruning.influence import explain
  from pruning.runtime.cache import cache_root
  from pruning.training import loop

  spec = pruning.ProxySpec(
    model="mlp",
    model_options={"hidden": [16]},
    training=TrainConfig(epochs=3, batch_size=64),
    seeds=[0, 1],
    scores=["el2n"],
    keep_checkpoints=True,
  )
  manifest = pruning.score_dataset(digits, spec, progress=False)
  test = [str(i) for i in digits.test.ids[:3]]
  trained_epoch = loop._train_epoch

  def refuse(*args, **kwargs):
    raise AssertionError("the kept checkpoints were not read: the proxies trained again")

  monkeypatch.setattr(loop, "_train_epoch", refuse)
  kept = explain(manifest, digits, test=test, progress=False)
  assert kept.kept
  monkeypatch.setattr(loop, "_train_epoch", trained_epoch)
  (store,) = (cache_root() / "proxy-checkpoints").iterdir()
  for damage in ("signature", "contents"):
    (entry,) = store.glob("epoch-*")
    if damage == "signature":  # a kept run of other settings under this key
      host = json.loads((entry / "host.json").read_text())
      host["signature"]["seeds"] = [7]
      (entry / "host.json").write_text(json.dumps(host))
    else:
      (entry / "host.npz").write_bytes(b"not an npz")
      (entry / "host.json").write_text("{")
    with pytest.warns(UserWarning, match="kept proxy checkpoints .* unusable"):
      again = explain(manifest, digits, test=test, progress=False)
    assert not again.kept
    np.testing.assert_array_equal(again.values, kept.values)
    np.testing.assert_array_equal(explain(manifest, digits, test=test, progress=False).values, kept.values)
  # A cache that cannot be written (a full disk): the influence is still computed, the entry not kept.
  import errno
  import shutil

  from pruning.training import checkpointing

  shutil.rmtree(store)

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(checkpointing.np, "savez", full)
  with pytest.warns(UserWarning, match="proxy checkpoints not kept .*No space left"):
    unkept = explain(manifest, digits, test=test, progress=False)
  np.testing.assert_array_equal(unkept.values, kept.values)
  assert not list(store.glob("epoch-*"))


def test_token_ids_are_not_standardised_by_default():
  """A TrainData built by hand around token ids: "auto" leaves the ids as they are (as for text data)."""
  data = pruning.load_dataset("synthtext", vocab_size=128, max_length=16)
  part = data.train.take(np.arange(32))
  spec = pruning.ModelSpec(
    model="transformer",
    options={"hidden": 8, "mlp": 16, "layers": 1, "heads": 2},
    seeds=[0],
    training=TrainConfig(epochs=1, batch_size=16),
  ).for_data(data)
  by_default = pruning.train_models(pruning.TrainData(x=part.x, y=part.y, num_classes=4), spec, progress=False)
  assert by_default.normalizer.describe()["mode"] == "none"
  np.testing.assert_array_equal(by_default.normalizer(part.x), part.x)  # what the model reads: the ids themselves
