"""Proxies without training: stacked random states at every asked-for epoch.

The exact-gradient checks (GraNd, TracIn) hold for any weights; trained ones
only cost a compiled training step per architecture. Each epoch's state is
the initialisation plus seeded Gaussian noise, so no parameter keeps its
initial value (LayerNorm scales of 1, zero biases).
"""

from __future__ import annotations

import jax
import numpy as np

from pruning.data.normalization import Normalizer
from pruning.training import TrainedModels, init_models


def random_models(name, options, x, *, num_classes, seeds=(0, 1), epochs=(1,), normalize="auto") -> TrainedModels:
  graphdef, (params, rest) = init_models(
    name, options, input_shape=tuple(x.shape[1:]), num_classes=num_classes, seeds=list(seeds)
  )
  rng = np.random.default_rng(0)

  def perturbed(tree):
    return jax.tree.map(lambda a: (np.asarray(a) + 0.1 * rng.normal(size=a.shape)).astype(a.dtype), tree)

  checkpoints = {epoch: (perturbed(params), jax.tree.map(np.asarray, rest)) for epoch in epochs}
  return TrainedModels(
    model=name,
    model_options=options,
    input_shape=tuple(x.shape[1:]),
    num_classes=num_classes,
    seeds=tuple(seeds),
    normalizer=Normalizer.fit(x, mode=normalize),
    graphdef=graphdef,
    state=checkpoints[max(epochs)],
    checkpoints=checkpoints,
    num_steps=0,
    loss_history=[],
  )
