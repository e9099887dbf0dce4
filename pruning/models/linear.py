"""Softmax regression: `z = W^T x + b` on the flattened input."""

from __future__ import annotations

from flax import nnx

from pruning.models.layers import flat_size


class Linear(nnx.Module):
  def __init__(self, *, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs):
    self.head = nnx.Linear(flat_size(input_shape), num_classes, rngs=rngs)

  def features(self, x):
    """The head's input h: here the flattened input itself."""
    return x.reshape((x.shape[0], -1))

  def __call__(self, x):
    return self.head(self.features(x))
