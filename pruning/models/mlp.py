"""Multi-layer perceptron with ReLU on the flattened input."""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from pruning.models.layers import flat_size


class MLP(nnx.Module):
  """`hidden` sets the widths of the hidden layers, e.g. (512, 512)."""

  def __init__(
    self,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    hidden: Sequence[int] = (256, 256),
  ):
    widths = [flat_size(input_shape), *hidden]
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

  def features(self, x):
    """The head's input h: the last hidden layer's activations."""
    h = x.reshape((x.shape[0], -1))
    for layer in self.hidden:
      h = nnx.relu(layer(h))
    return h

  def __call__(self, x):
    return self.head(self.features(x))
