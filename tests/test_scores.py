"""Scores against NumPy references computed from the proxies' fixed weights."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

import pruning
from pruning.manifest import seed_column
from pruning.training import TrainConfig


def softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def reference_logits(models, x, epoch=None):
  """A float64 NumPy forward pass of `linear` or `mlp` proxies, one per seed."""
  params = nnx.to_pure_dict(models.state_at(epoch)[0])
  h0 = models.normalizer(x).reshape(len(x), -1).astype(np.float64)
  out = []
  for s in range(len(models.seeds)):
    h = h0
    for layer in (params.get("hidden") or {}).values():
      h = np.maximum(h @ np.asarray(layer["kernel"][s], np.float64) + np.asarray(layer["bias"][s], np.float64), 0)
    head = params["head"]
    out.append(h @ np.asarray(head["kernel"][s], np.float64) + np.asarray(head["bias"][s], np.float64))
  return np.stack(out)


def reference_scores(logits, y):
  p = softmax(logits)
  onehot = np.eye(logits.shape[-1])[y]
  p_true = p[..., np.arange(len(y)), y] if p.ndim == 2 else np.take_along_axis(p, y[None, :, None], -1)[..., 0]
  other = np.where(onehot.astype(bool), -np.inf, p).max(-1)
  return {
    "el2n": np.linalg.norm(p - onehot, axis=-1),
    "loss": -np.log(p_true),
    "confidence": p_true,
    "margin": p_true - other,
    "entropy": -(p * np.log(p)).sum(-1),
  }


@pytest.mark.parametrize("model,options", [("linear", {}), ("mlp", {"hidden": [32, 16]})])
def test_scores_match_numpy_reference(digits, model, options):
  x, y = digits.train.x[:120], digits.train.y[:120]
  models = pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model=model, options=options, seeds=[3, 5], training=TrainConfig(epochs=2, batch_size=40)),
    checkpoint_epochs=[0, 1],
    progress=False,
  )
  for epoch in (None, 0, 1):
    requests = ["el2n", "loss", "confidence", "margin", "entropy"]
    if epoch is not None:
      requests = [f"{r}@{epoch}" for r in requests]
    ours = pruning.compute_scores(models, x, y, requests, progress=False)
    expected = reference_scores(reference_logits(models, x, epoch), y)
    for name, values in expected.items():
      column = name if epoch is None else f"{name}_epoch{epoch}"
      np.testing.assert_allclose(ours[column], values, rtol=2e-4, atol=2e-5, err_msg=f"{column}")


def test_el2n_closed_form_cases():
  from pruning.scores.el2n import el2n_from_logits

  # A confident correct prediction scores ~0; a confident wrong one ~sqrt(2);
  # uniform over C classes scores sqrt((1 - 1/C)^2 + (C - 1)/C^2) = sqrt(1 - 1/C).
  logits = np.array([[50.0, 0, 0, 0], [0, 50.0, 0, 0], [0, 0, 0, 0]], np.float32)
  labels = np.array([0, 0, 2])
  values = np.asarray(el2n_from_logits(logits, labels))
  np.testing.assert_allclose(values, [0.0, np.sqrt(2.0), np.sqrt(0.75)], atol=1e-6)


def test_manifest_aggregates_per_seed_values(linear_manifest):
  table = linear_manifest.table
  for column, info in linear_manifest.scores.items():
    per_seed = np.stack([table[seed_column(column, s)].to_numpy(np.float64) for s in info["seeds"]])
    np.testing.assert_allclose(table[column], per_seed.mean(0), rtol=1e-12)
    np.testing.assert_allclose(table[f"{column}_std"], per_seed.std(0), rtol=1e-12, atol=1e-15)
  assert linear_manifest.scores["el2n_epoch0"]["epoch"] == 0
  assert linear_manifest.scores["el2n"]["epoch"] == 1
  assert linear_manifest.scores["margin"]["harder"] == "lower"
  assert linear_manifest.scores["el2n"]["harder"] == "higher"


def test_unknown_score_suggests_nearest():
  with pytest.raises(pruning.UserError, match="did you mean 'el2n'"):
    pruning.ScoreRequest.parse("el2m")
  with pytest.raises(pruning.UserError, match="NAME@EPOCH"):
    pruning.ScoreRequest.parse("el2n@x")
