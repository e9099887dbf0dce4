"""Label-free embedding scores (`pruning.scores.embedding`) against a direct
NumPy computation from each proxy's own `features`, and the selection rule
that drops near-duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from sklearn.cluster import KMeans

import pruning
from pruning.scores.run import ProxySpec, score_dataset, train_proxies
from pruning.training import TrainConfig

SCORES = ("prototype_distance", "class_prototype_distance", "is_duplicate")


@pytest.fixture(scope="module")
def digits_with_copies():
  """400 digits, 40 of them twice (exact copies under new ids) and 40 nudged by 1e-3 of noise."""
  data = pruning.load_dataset("digits")
  rng = np.random.default_rng(0)
  rows = np.arange(400)
  copies = rng.choice(rows, 80, replace=False)
  x = np.concatenate([data.train.x[rows], data.train.x[copies]])
  x[-40:] += 1e-3 * rng.standard_normal(x[-40:].shape).astype(x.dtype)
  y = np.concatenate([data.train.y[rows], data.train.y[copies]])
  split = pruning.data.make_split(x, y, None, source="t")
  test = pruning.data.make_split(data.test.x[:100], data.test.y[:100], None, source="t")
  return pruning.data.make_dataset("copies", split, test, num_classes=10), copies


def _features(models, x):
  """Each seed's penultimate features, one model at a time (not the scores' batched program)."""
  import jax

  out = []
  for seed in range(len(models.seeds)):
    model = nnx.merge(models.graphdef, *jax.tree.map(lambda a: a[seed], models.state))
    out.append(np.asarray(model.features(models.normalizer(x))))
  return np.stack(out)


def test_embedding_scores_match_numpy(digits_with_copies):
  data, copies = digits_with_copies
  spec = ProxySpec(
    model="mlp", model_options={"hidden": [32]}, training=TrainConfig(epochs=2), seeds=2, scores=SCORES, prototypes=4
  )
  models = train_proxies(data, spec, progress=False)
  manifest = pruning.scores.run.score_proxies(models, data, spec, progress=False).table
  features = _features(models, data.train.x)
  expected = {name: [] for name in SCORES}
  normalised = features / np.linalg.norm(features, axis=-1, keepdims=True)
  mean_cosine = np.mean([e @ e.T for e in normalised], axis=0)  # SemDeDup's similarity over seeds
  for seed, e in zip(models.seeds, normalised):
    centroids = KMeans(n_clusters=4, n_init=3, random_state=seed).fit(e).cluster_centers_
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    expected["prototype_distance"].append(1 - (e @ centroids.T).max(axis=1))
    own = np.empty(len(e))
    for c in range(10):
      mean = e[data.train.y == c].mean(axis=0)
      own[data.train.y == c] = 1 - e[data.train.y == c] @ (mean / np.linalg.norm(mean))
    expected["class_prototype_distance"].append(own)
  joint = np.concatenate(list(normalised), axis=1) / np.sqrt(len(normalised))
  expected["is_duplicate"] = [_semdedup_loop(joint, mean_cosine, 0, threshold=spec.duplicate_similarity)]
  for name in SCORES:
    np.testing.assert_allclose(manifest[name], np.mean(expected[name], axis=0), rtol=1e-4, atol=1e-5, err_msg=name)
  duplicate = manifest["is_duplicate"].to_numpy()
  assert set(np.unique(duplicate)) == {0.0, 1.0}
  # Of an example and its copy (exact or nudged), both are never kept.
  pairs = np.stack([copies, 400 + np.arange(80)], axis=1)
  assert np.all(duplicate[pairs].sum(axis=1) >= 1)


def _semdedup_loop(e, similarity, seed, *, threshold):
  """SemDeDup as written (Abbas et al.): per cluster, farthest from the centroid first; an
  example more `similarity` than the threshold to any earlier one is a duplicate."""
  k = int(np.ceil(len(e) / 1000))
  fit = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(e)
  centroids = fit.cluster_centers_ / np.linalg.norm(fit.cluster_centers_, axis=1, keepdims=True)
  marked = np.zeros(len(e))
  for c in range(k):
    members = [int(i) for i in np.flatnonzero(fit.labels_ == c)]
    members.sort(key=lambda i: float(e[i] @ centroids[c]))
    for position, i in enumerate(members):
      if any(similarity[i, j] > threshold for j in members[:position]):
        marked[i] = 1.0
  return marked


@pytest.mark.slow
def test_dropping_duplicates_keeps_one_of_each(digits_with_copies):
  data, copies = digits_with_copies
  spec = ProxySpec(model="mlp", model_options={"hidden": [32]}, training=TrainConfig(epochs=1), seeds=1, scores=SCORES)
  manifest = score_dataset(data, spec, progress=False)
  marked = manifest.table["is_duplicate"].to_numpy() >= 0.5
  subset = pruning.select(manifest, keep=1.0, strategy="random", class_rule="global", drop_duplicates=True)
  assert len(subset.table) == len(manifest.table) - marked.sum()
  assert not subset.table["is_duplicate"].to_numpy().any()
  assert subset.provenance["selection"]["duplicates_dropped"] == int(marked.sum()) >= 80
  bare = score_dataset(data, ProxySpec(seeds=1, training=TrainConfig(epochs=1)), progress=False)
  with pytest.raises(pruning.UserError, match="no is_duplicate column: score it with is_duplicate"):
    pruning.select(bare, keep=0.5, drop_duplicates=True)
