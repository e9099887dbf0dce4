"""Shape helpers shared by the convolutional models."""

from __future__ import annotations

import math


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
  """The (spatial..., channels) shape a convolution sees.

  (L,) signals become (L, 1); (H, W) images become (H, W, 1); (H, W, C) stays.
  """
  if len(input_shape) == 1:
    return (input_shape[0], 1)
  if len(input_shape) == 2:
    return (*input_shape, 1)
  return tuple(input_shape)


def flat_size(input_shape: tuple[int, ...]) -> int:
  return math.prod(input_shape)
