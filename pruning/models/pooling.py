"""Max pooling over non-overlapping windows, with a fast exact gradient.

`max_pool(h, window)` equals `flax.nnx.max_pool(h, window, strides=window)`
(VALID padding) in value and in gradient: the gradient of each window goes
to its first maximum in row-major order, as XLA's `select_and_scatter` does.
That XLA op was the CPU backend's slowest part of a small CNN's backward pass
(about 220 of the 350 ms of the zoo's CNN training step at batch 512); here
the windows are a reshape and the gradient an elementwise select, 4-7x
faster (`benchmarks/pooling.py`, figures in `benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _windows(h: jax.Array, window: tuple[int, ...]) -> jax.Array:
  """(B, *spatial, C) -> (B, o1, w1, o2, w2, ..., C), dropping rows that fill no window."""
  out = [s // w for s, w in zip(h.shape[1:-1], window)]
  cropped = h[(slice(None), *(slice(0, o * w) for o, w in zip(out, window)), slice(None))]
  shape = [h.shape[0]]
  for o, w in zip(out, window):
    shape += [o, w]
  return cropped.reshape(*shape, h.shape[-1])


def _window_axes(window) -> tuple[int, ...]:
  return tuple(2 + 2 * i for i in range(len(window)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(h: jax.Array, window: tuple[int, ...]) -> jax.Array:
  # XLA's own reduction is a little faster than a max over the reshaped windows.
  return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *window, 1), "VALID")


def _max_pool_forward(h, window):
  pooled = _max_pool(h, window)
  return pooled, (h, pooled)


def _max_pool_backward(window, residuals, g):
  h, pooled = residuals
  windows, axes = _windows(h, window), _window_axes(window)
  # Row-major position of each element within its window.
  position = jnp.zeros([1] * windows.ndim, jnp.int32)
  for axis, size in zip(axes, window):
    shape = [1] * windows.ndim
    shape[axis] = size
    position = position * size + jnp.arange(size, dtype=jnp.int32).reshape(shape)
  is_max = windows == jnp.expand_dims(pooled, axes)
  first = jnp.min(jnp.where(is_max, position, position.size), axis=axes, keepdims=True)
  grad = jnp.where(position == first, jnp.expand_dims(g, axes), 0).astype(g.dtype)
  grad = grad.reshape(h.shape[0], *(o * w for o, w in zip(pooled.shape[1:-1], window)), h.shape[-1])
  pad = [(0, 0)] + [(0, s - c) for s, c in zip(h.shape[1:-1], grad.shape[1:-1])] + [(0, 0)]
  return (jnp.pad(grad, pad) if any(p for _, p in pad) else grad,)


_max_pool.defvjp(_max_pool_forward, _max_pool_backward)


def max_pool(h: jax.Array, window: tuple[int, ...]) -> jax.Array:
  """Max over non-overlapping `window`s of (B, *spatial, C) inputs; VALID padding."""
  window = tuple(int(w) for w in window)
  if len(window) != h.ndim - 2:
    raise ValueError(f"window {window} does not match input of shape {h.shape} (batch, spatial..., channels)")
  return _max_pool(h, window)
