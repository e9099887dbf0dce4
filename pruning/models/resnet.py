"""ResNet-18, CIFAR variant (He et al., 2016): 3x3 stem, no max-pool, [2, 2, 2, 2] blocks.

Normalisation is GroupNorm instead of BatchNorm: it uses no batch statistics,
so per-example scores (and per-example gradients) are defined in training
and evaluation alike, and seeds can be trained as one vmapped program without
carrying running averages. This departs from the paper's BatchNorm.
"""

from __future__ import annotations

from flax import nnx

from pruning.models.layers import image_shape


def _groups(channels: int) -> int:
  for groups in (32, 16, 8, 4, 2, 1):
    if channels % groups == 0:
      return groups
  return 1


class BasicBlock(nnx.Module):
  def __init__(self, in_channels: int, out_channels: int, stride: int, dims: int, *, rngs: nnx.Rngs):
    k3, s = (3,) * dims, (stride,) * dims
    self.conv1 = nnx.Conv(in_channels, out_channels, k3, strides=s, padding="SAME", use_bias=False, rngs=rngs)
    self.norm1 = nnx.GroupNorm(out_channels, num_groups=_groups(out_channels), rngs=rngs)
    self.conv2 = nnx.Conv(out_channels, out_channels, k3, padding="SAME", use_bias=False, rngs=rngs)
    self.norm2 = nnx.GroupNorm(out_channels, num_groups=_groups(out_channels), rngs=rngs)
    if stride != 1 or in_channels != out_channels:
      self.shortcut = nnx.Conv(in_channels, out_channels, (1,) * dims, strides=s, use_bias=False, rngs=rngs)
      self.shortcut_norm = nnx.GroupNorm(out_channels, num_groups=_groups(out_channels), rngs=rngs)
    else:  # mypy types the attributes from the branch above; NNX needs them set either way
      self.shortcut = None  # type: ignore[assignment]
      self.shortcut_norm = None  # type: ignore[assignment]

  def __call__(self, x):
    h = nnx.relu(self.norm1(self.conv1(x)))
    h = self.norm2(self.conv2(h))
    skip = x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))
    return nnx.relu(h + skip)


class ResNet18(nnx.Module):
  """`width` is the first stage's channel count (64 in the paper)."""

  def __init__(
    self,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    width: int = 64,
  ):
    self.image_shape = image_shape(input_shape)
    dims = len(self.image_shape) - 1
    self.stem = nnx.Conv(self.image_shape[-1], width, (3,) * dims, padding="SAME", use_bias=False, rngs=rngs)
    self.stem_norm = nnx.GroupNorm(width, num_groups=_groups(width), rngs=rngs)
    blocks, in_channels = [], width
    for stage, multiplier in enumerate((1, 2, 4, 8)):
      out_channels = width * multiplier
      for block in range(2):
        stride = 2 if stage > 0 and block == 0 else 1
        blocks.append(BasicBlock(in_channels, out_channels, stride, dims, rngs=rngs))
        in_channels = out_channels
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(in_channels, num_classes, rngs=rngs)

  def features(self, x):
    """The head's input h: globally average-pooled final activations."""
    h = x.reshape((x.shape[0], *self.image_shape))
    h = nnx.relu(self.stem_norm(self.stem(h)))
    for block in self.blocks:
      h = block(h)
    return h.mean(axis=tuple(range(1, h.ndim - 1)))

  def __call__(self, x):
    return self.head(self.features(x))
