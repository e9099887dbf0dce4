"""VoG against a direct computation that stores all K input gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import pruning
from pruning.scores.vog import normalize
from pruning.training import TrainConfig


def test_vog_matches_stored_gradients(digits):
  x, y = digits.train.x[:60], digits.train.y[:60]
  config = TrainConfig(epochs=3, batch_size=20)
  manifest = pruning.score_dataset(
      pruning.data.make_dataset("sub", pruning.data.make_split(x, y, None, source="t"), None, num_classes=10),
      model="cnn", model_options={"channels": [4], "dense": 8}, config=config, seeds=[0, 1],
      scores=["vog", "vog_dataset", "vog_raw"], progress=False)
  models = pruning.train_models(x, y, model="cnn", model_options={"channels": [4], "dense": 8}, num_classes=10,
                                seeds=[0, 1], config=config, checkpoint_epochs=[1, 2, 3], progress=False)
  xn = models.normalizer(x)
  raw = np.zeros((2, len(y)))
  for s in range(2):
    for i in range(len(y)):
      grads = []
      for epoch in (1, 2, 3):
        params, rest = jax.tree.map(lambda a: jnp.asarray(a[s]), models.checkpoints[epoch])

        def true_logit(xi):
          return nnx.merge(models.graphdef, params, rest)(xi[None])[0, y[i]]

        grads.append(np.asarray(jax.grad(true_logit)(jnp.asarray(xn[i])), np.float64).mean(-1))
      raw[s, i] = np.std(np.stack(grads), axis=0).mean()
  np.testing.assert_allclose(manifest.seed_values("vog_raw"), raw, rtol=2e-4, atol=1e-7)
  by_class = manifest.seed_values("vog")
  for c in np.unique(y):
    rows = y == c
    if rows.sum() > 1:
      np.testing.assert_allclose(by_class[:, rows].mean(1), 0, atol=1e-5)
      np.testing.assert_allclose(by_class[:, rows].std(1), 1, atol=1e-4)
  np.testing.assert_allclose(manifest.seed_values("vog_dataset"), normalize(raw, y, "dataset"), rtol=1e-3, atol=1e-4)
