"""Label-free scores from embeddings: prototypes and semantic near-duplicates.

The embedding of an example is its proxies' penultimate features, the head's
input `features(x)` at the end of proxy training, one per seed; under a
frozen pretrained encoder with mean pooling (all-MiniLM-L6-v2) it is the
encoder's pooled output itself. Every score works on the L2-normalised
embeddings e_i of the whole training split:

- `prototype_distance` (Sorscher et al., NeurIPS 2022, *Beyond neural
  scaling laws*): k-means with k prototypes (default: the number of
  classes) on the e_i; the score is the cosine distance to the nearest
  centroid, 1 - max_c cos(e_i, mu_c). Far is hard and atypical. Their rule:
  keep the hardest when data is plentiful, the easiest when it is scarce.
- `class_prototype_distance`: the same to the centroid of the example's
  own class, 1 - cos(e_i, mu_{y_i}) (the supervised variant).
- `is_duplicate` (Abbas et al., 2023, *SemDeDup*): k-means into clusters of
  about `DEDUP_CLUSTER` examples; within a cluster, examples in order of
  decreasing distance to the centroid, and an example whose cosine
  similarity to an earlier one exceeds `duplicate_similarity` (1 - eps) is a
  duplicate. So of each group of near-duplicates the one farthest from the
  centroid is kept. With several proxy seeds the similarity is the mean of
  the seeds' cosine similarities (one decision, so two seeds never each
  keep a different one of a pair): the column is 1 for a duplicate, else
  0, and `select(..., drop_duplicates=True)` drops the 1s.

k-means is scikit-learn's (seeded by the proxy seed, `n_init=3`).
"""

from __future__ import annotations

import math

import numpy as np

from pruning.errors import UserError
from pruning.scores.context import ScoringContext
from pruning.scores.grand import _features_and_logits
from pruning.scores.registry import HARDER_HIGHER, HARDER_LOWER, register_score
from pruning.training import mesh as sharding
from pruning.training import pad_rows

BATCH = 512
DEDUP_CLUSTER = 1000  # examples per SemDeDup cluster: pairwise similarities within one stay small
DEFAULT_SIMILARITY = 0.95
_BLOCK = 2048  # rows of a similarity block


def normalised(e: np.ndarray) -> np.ndarray:
  e = np.asarray(e, np.float32)
  return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def kmeans_centroids(e: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(labels, normalised centroids) of scikit-learn's k-means on normalised embeddings `e`."""
  from sklearn.cluster import KMeans

  k = max(1, min(int(k), len(e)))
  fit = KMeans(n_clusters=k, n_init=3, random_state=int(seed)).fit(e)
  return fit.labels_, normalised(fit.cluster_centers_)


def prototype_distance(e: np.ndarray, k: int, seed: int) -> np.ndarray:
  """1 - max_c cos(e_i, mu_c) over k-means centroids (Sorscher et al.)."""
  _, centroids = kmeans_centroids(e, k, seed)
  return 1.0 - (e @ centroids.T).max(axis=1)


def class_prototype_distance(e: np.ndarray, y: np.ndarray) -> np.ndarray:
  """1 - cos(e_i, mu_{y_i}), mu_c the normalised mean of class c's embeddings."""
  out = np.empty(len(e), np.float32)
  for c in np.unique(y):
    rows = np.flatnonzero(y == c)
    centroid = normalised(e[rows].mean(axis=0))
    out[rows] = 1.0 - e[rows] @ centroid
  return out


def semantic_duplicates(e: np.ndarray, similarity: float, seed: int) -> np.ndarray:
  """SemDeDup's marks (True: a near-duplicate of an example kept): see the module doc."""
  labels, centroids = kmeans_centroids(e, math.ceil(len(e) / DEDUP_CLUSTER), seed)
  duplicate = np.zeros(len(e), bool)
  for c in range(len(centroids)):
    members = np.flatnonzero(labels == c)
    # Farthest from the centroid first (stable: ties in row order): the first of a group is kept.
    members = members[np.argsort(e[members] @ centroids[c], kind="stable")]
    cluster = e[members]
    for start in range(0, len(members), _BLOCK):
      stop = min(start + _BLOCK, len(members))
      block = cluster[start:stop] @ cluster[:stop].T  # these rows against every row up to them
      earlier = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
      duplicate[members[start:stop]] = np.where(earlier, block, -np.inf).max(axis=1) > similarity
  return duplicate


def joint_embeddings(embeddings: np.ndarray) -> np.ndarray:
  """(S, N, D) normalised embeddings -> (N, S D) unit vectors whose cosine is the mean of the seeds' cosines."""
  s, n, _ = embeddings.shape
  return embeddings.transpose(1, 0, 2).reshape(n, -1) / np.sqrt(s)


class EmbeddingScores:
  """A training hook: at the end of proxy training, each seed's embeddings of
  the training split and the three scores from them (`TrainedModels.extras`)."""

  def __init__(self, x, y, *, last_epoch: int, seeds, prototypes: int, similarity: float):
    self.x, self.y = x, np.asarray(y)
    self.last_epoch, self.seeds = last_epoch, tuple(seeds)
    self.prototypes, self.similarity = prototypes, similarity
    self.values: dict[str, np.ndarray] = {}

  def __call__(self, epoch, graphdef, normalizer, params, rest) -> None:
    if epoch != self.last_epoch:
      return
    fn = _features_and_logits(graphdef, sharding.seed_map(params, "loop"))  # the head's few products: no second program
    x = normalizer(self.x)
    parts = []
    for start in range(0, len(x), BATCH):
      batch = x[start : start + BATCH]
      parts.append(np.asarray(fn(params, rest, pad_rows(np.asarray(batch), BATCH))[0])[:, : len(batch)])
    embeddings = normalised(np.concatenate(parts, axis=1).reshape(len(self.seeds), len(x), -1))
    self.values = {
      "prototype_distance": np.stack(
        [prototype_distance(e, self.prototypes, s) for e, s in zip(embeddings, self.seeds)]
      ),
      "class_prototype_distance": np.stack([class_prototype_distance(e, self.y) for e in embeddings]),
      # One decision for all seeds, on the seeds' mean cosine similarity (their embeddings side by side),
      # so a pair is never split by two seeds each keeping the other.
      "is_duplicate": np.broadcast_to(
        semantic_duplicates(joint_embeddings(embeddings), self.similarity, self.seeds[0]), embeddings.shape[:2]
      ).astype(np.float32),
    }

  def state_dict(self) -> dict:
    return dict(self.values)

  def load_state_dict(self, state: dict) -> None:
    self.values = {name: np.asarray(value) for name, value in state.items()}

  def results(self) -> dict[str, np.ndarray]:
    return {f"embedding_{name}": value for name, value in self.values.items()}


def training_hook(dataset, spec) -> EmbeddingScores:
  return EmbeddingScores(
    dataset.train.x,
    dataset.train.y,
    last_epoch=spec.training.epochs,
    seeds=spec.seeds,
    prototypes=spec.prototypes or dataset.num_classes,
    similarity=spec.duplicate_similarity,
  )


def _check(spec) -> None:
  if spec.training.epochs < 1:
    raise UserError("embedding scores read the proxies at the end of training: train for at least one epoch")


def _provenance(spec, models) -> dict:
  return {"prototypes": spec.prototypes, "duplicate_similarity": spec.duplicate_similarity}


def _recorded(name: str):
  def compute(context: ScoringContext, epoch: int | None) -> np.ndarray:
    return context.recorded(context.models.extras[f"embedding_{name}"])

  return compute


for _name, _harder, _text, _reference in (
  (
    "prototype_distance",
    HARDER_HIGHER,
    "cosine distance of the embedding to the nearest k-means prototype (label-free)",
    "Sorscher et al., NeurIPS 2022",
  ),
  (
    "class_prototype_distance",
    HARDER_HIGHER,
    "cosine distance of the embedding to its class's mean embedding",
    "Sorscher et al., NeurIPS 2022",
  ),
  (
    "is_duplicate",
    HARDER_LOWER,
    "1 if its embedding marks it a semantic near-duplicate of a kept example (SemDeDup), else 0",
    "Abbas et al., 2023 (SemDeDup)",
  ),
):
  register_score(
    _name,
    harder=_harder,
    at_checkpoint=False,
    training_hook=training_hook,
    provenance=_provenance,
    check=_check,
    description=_text,
    reference=_reference,
  )(_recorded(_name))
