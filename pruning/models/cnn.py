"""A small convolutional net: two conv-ReLU-maxpool blocks, a dense layer, a head.

Works on 1-D signals (L,), grey images (H, W) and images (H, W, C).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flax import nnx

from pruning.models.layers import image_shape
from pruning.models.pooling import max_pool


class CNN(nnx.Module):
  def __init__(
    self,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    channels: Sequence[int] = (32, 64),
    dense: int = 128,
  ):
    self.image_shape = image_shape(input_shape)
    spatial = list(self.image_shape[:-1])
    kernel = (3,) * len(spatial)
    in_channels = self.image_shape[-1]
    convs, pools = [], []
    for out_channels in channels:
      convs.append(nnx.Conv(in_channels, out_channels, kernel, padding="SAME", rngs=rngs))
      pool = all(s >= 2 for s in spatial)
      pools.append(pool)
      if pool:
        spatial = [s // 2 for s in spatial]
      in_channels = out_channels
    self.convs = nnx.List(convs)
    self.pools = tuple(pools)
    self.window = (2,) * len(spatial)
    self.dense = nnx.Linear(math.prod(spatial) * in_channels, dense, rngs=rngs)
    self.head = nnx.Linear(dense, num_classes, rngs=rngs)

  def features(self, x):
    """The head's input h: the dense layer's activations."""
    h = x.reshape((x.shape[0], *self.image_shape))
    for conv, pool in zip(self.convs, self.pools):
      h = nnx.relu(conv(h))
      if pool:
        h = max_pool(h, self.window)
    return nnx.relu(self.dense(h.reshape((h.shape[0], -1))))

  def __call__(self, x):
    return self.head(self.features(x))
