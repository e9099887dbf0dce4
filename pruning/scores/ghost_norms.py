"""Exact per-example gradient norms without per-example gradients ("ghost norms").

For a dense layer with per-example input a_i and output gradient g_i, the
per-example kernel gradient is the outer product a_i g_i^T, so
`||grad_i||^2 = ||a_i||^2 ||g_i||^2`; over positions t (sequences, images)
it is `||sum_t a_it g_it^T||^2`, computed either by forming the (in, out)
matrix per example or from Gram matrices `sum_{t,t'} (a_t.a_t')(g_t.g_t')`,
whichever is smaller. A convolution is a dense layer on its im2col patches.
Normalisation scales and biases get `sum_t g_t * x_hat_t` and `sum_t g_t`.
(Goodfellow, 2015; Li et al., 2021; Bu et al., 2022.)

One batched backward pass gives every g_i: each supported layer's output gets
a zero "probe" added, and the gradient of the summed loss with respect to
the probes is each example's output gradient, since examples do not interact
(no batch statistics). Layers are tapped by swapping their class for a
subclass that records inputs and adds the probe; nothing in the user's model
changes.

Supported: `nnx.Linear`, `nnx.Conv` (no groups, masks or circular padding),
`nnx.Embed`, `nnx.LayerNorm`, `nnx.GroupNorm`, and `nnx.BatchNorm` with
`use_running_average=True`. A model with any other parameter, or with a layer
called twice per forward pass (weight sharing), is refused with
`UnsupportedModel`, and callers fall back to `vmap` of `grad`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

_CONTEXT: contextvars.ContextVar = contextvars.ContextVar("ghost_norm_taps")


class UnsupportedModel(Exception):
  """The model has parameters or call patterns the ghost-norm rules do not cover."""


def layer_class(module) -> type:
  """The supported layer class of a (possibly tapped) module."""
  cls = type(module)
  return cls if cls in RULES else cls.__mro__[1]


def flatten_positions(a: jax.Array) -> jax.Array:
  """(B, ..., F) -> (B, T, F)."""
  return a.reshape(a.shape[0], -1, a.shape[-1])


def _outer_sq_norm(a: jax.Array, g: jax.Array) -> jax.Array:
  """Per example `||sum_t a_t g_t^T||_F^2` for a (B, T, K) and g (B, T, O)."""
  t, k, o = a.shape[1], a.shape[2], g.shape[2]
  if t == 1:
    return jnp.sum(a[:, 0] ** 2, -1) * jnp.sum(g[:, 0] ** 2, -1)
  if k * o <= t * (k + o):  # fewer multiplications: T K O for the matrix against T^2 (K + O) for the Grams
    return jnp.sum(jnp.einsum("btk,bto->bko", a, g) ** 2, axis=(1, 2))
  return jnp.sum(jnp.einsum("btk,bsk->bts", a, a) * jnp.einsum("bto,bso->bts", g, g), axis=(1, 2))


def _bias_sq_norm(g: jax.Array) -> jax.Array:
  return jnp.sum(jnp.sum(g, axis=1) ** 2, -1)


class _Dense:
  params = ("kernel", "bias")

  @staticmethod
  def record(module, x, out):
    return flatten_positions(x)

  @staticmethod
  def sq_norm(module, saved, g):
    g = flatten_positions(g)
    total = _outer_sq_norm(saved, g)
    return total + _bias_sq_norm(g) if module.use_bias else total


def window_slices(x, kernel, strides, dilation, padding) -> list[jax.Array]:
  """For each kernel offset o, the (B, *out_spatial, C) inputs that o multiplies.

  Pure data movement (a pad and strided slices).
  """
  spatial = x.shape[1:-1]
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(
      spatial, tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation)), strides, padding
    )
  x = jnp.pad(x, [(0, 0), *padding, (0, 0)])
  out_shape = [(x.shape[1 + i] - (kernel[i] - 1) * dilation[i] - 1) // strides[i] + 1 for i in range(len(kernel))]
  slices = []
  for offset in itertools.product(*(range(k) for k in kernel)):
    index = [slice(None)]
    for i, o in enumerate(offset):
      start = o * dilation[i]
      index.append(slice(start, start + strides[i] * (out_shape[i] - 1) + 1, strides[i]))
    slices.append(x[tuple(index)])
  return slices


def im2col(x, kernel, strides, dilation, padding):
  """(B, *spatial, C) -> (B, *out_spatial, prod(kernel) * C).

  The channel order differs from the kernel's layout, which a Frobenius norm
  does not see.
  """
  return jnp.concatenate(window_slices(x, kernel, strides, dilation, padding), axis=-1)


# Below this many input channels, one product over im2col patches beats one
# product per kernel offset (benchmarks/RESULTS.md, "Convolution kernels").
_MIN_CHANNELS_PER_OFFSET = 8


class ConvRule:
  """A convolution's per-example kernel gradient is `sum_t patch_t g_t^T`.

  When that (K, O) matrix is the cheaper form and the input has enough
  channels, it is summed offset by offset: for kernel offset o the block
  `sum_t x_{t+o} g_t^T` is a product of a strided slice of the input, so the
  patches (K = prod(kernel) times the input) are never built. Otherwise the
  patches are built and `_outer_sq_norm` picks the matrix or the Gram form.
  """

  params = ("kernel", "bias")

  @staticmethod
  def check(module):
    padding = module.padding
    if (
      module.feature_group_count != 1
      or module.mask is not None
      or (isinstance(padding, str) and padding not in ("SAME", "VALID"))
    ):
      raise UnsupportedModel(f"convolution with groups, a mask or {padding!r} padding")

  @staticmethod
  def geometry(module):
    dims = len(module.kernel_size)
    if dims > 3:
      raise UnsupportedModel("convolutions over more than 3 dimensions")
    as_tuple = lambda v: (v,) * dims if isinstance(v, int) else tuple(v or (1,) * dims)
    padding = module.padding
    if isinstance(padding, int):
      padding = [(padding, padding)] * dims
    elif not isinstance(padding, str):
      padding = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    return (
      tuple(module.kernel_size),
      as_tuple(module.strides),
      as_tuple(module.kernel_dilation),
      as_tuple(module.input_dilation),
      padding,
    )

  @staticmethod
  def per_offset(module, inputs, g) -> bool:
    """Whether the per-example (K, O) gradient is summed one kernel offset at a time from the
    recorded inputs (else it is formed from im2col patches, or not at all: the Gram form)."""
    kernel = ConvRule.geometry(module)[0]
    positions = math.prod(g.shape[1:-1])
    channels, outputs = inputs.shape[-1], g.shape[-1]
    return channels >= _MIN_CHANNELS_PER_OFFSET and math.prod(kernel) * channels * outputs <= positions * positions

  @staticmethod
  def record(module, x, out):
    kernel, strides, dilation, input_dilation, padding = ConvRule.geometry(module)
    if all(d == 1 for d in input_dilation):
      # The inputs, not their patches: patches (K times the inputs) are built where they are used,
      # after the backward pass, and TracIn builds them a few examples at a time.
      return {"inputs": x}
    # rare; lax's patches are a convolution with a one-hot kernel, K times the work
    spatial = "DHW"[3 - len(kernel) :]
    patches = jax.lax.conv_general_dilated_patches(
      x,
      filter_shape=kernel,
      window_strides=strides,
      padding=padding,
      lhs_dilation=input_dilation,
      rhs_dilation=dilation,
      dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
    )
    return {"patches": flatten_positions(patches)}

  @staticmethod
  def patches(module, saved) -> jax.Array:
    """(B, T, K) im2col patches of the recorded inputs."""
    if "patches" in saved:
      return saved["patches"]
    kernel, strides, dilation, _, padding = ConvRule.geometry(module)
    return flatten_positions(im2col(saved["inputs"], kernel, strides, dilation, padding))

  @staticmethod
  def offset_blocks(module, inputs, g) -> list[jax.Array]:
    """Each kernel offset's (B, C, O) share of the per-example kernel gradient, from a strided
    slice of the (B, *spatial, C) inputs and the (B, *out_spatial, O) output gradients."""
    kernel, strides, dilation, _, padding = ConvRule.geometry(module)
    positions = "".join(chr(ord("h") + i) for i in range(g.ndim - 2))
    # contracting the positions as separate axes, not flattened, spares XLA a copy of each slice
    spec = f"b{positions}c,b{positions}o->bco"
    return [jnp.einsum(spec, part, g) for part in window_slices(inputs, kernel, strides, dilation, padding)]

  @staticmethod
  def sq_norm(module, saved, g):
    if "patches" in saved or not ConvRule.per_offset(module, saved["inputs"], g):
      return _Dense.sq_norm(module, ConvRule.patches(module, saved), g)
    total = jnp.zeros(g.shape[0], jnp.float32)
    for block in ConvRule.offset_blocks(module, saved["inputs"], g):
      total += jnp.sum(block**2, axis=(1, 2))
    if module.use_bias:
      total += _bias_sq_norm(flatten_positions(g))
    return total


class _Norm:
  """LayerNorm, GroupNorm and eval-mode BatchNorm: `y = x_hat * scale + bias`."""

  params = ("scale", "bias")

  @staticmethod
  def check(module):
    if isinstance(module, nnx.BatchNorm) and not module.use_running_average:
      raise UnsupportedModel("BatchNorm in training mode mixes examples: call model.eval()")
    if getattr(module, "feature_axes", -1) not in (-1, (-1,)):
      raise UnsupportedModel("normalisation over non-final feature axes")

  @staticmethod
  def record(module, x, out):
    # x_hat is the layer's output with unit scale and zero bias: call the
    # layer's own code on a shallow view holding fresh unit/zero parameters
    # (the real ones belong to an outer trace and must not be mutated).
    base = layer_class(module)
    view = object.__new__(base)
    view.__dict__.update(module.__dict__)
    for name, fill in (("scale", jnp.ones_like), ("bias", jnp.zeros_like)):
      variable = module.__dict__.get(name)
      if variable is not None:
        view.__dict__[name] = nnx.Param(fill(variable[...]))
    x_hat = base.__call__(view, x)
    return flatten_positions(x_hat)

  @staticmethod
  def sq_norm(module, x_hat, g):
    g = flatten_positions(g)
    total = jnp.zeros(g.shape[0], g.dtype)
    if getattr(module, "scale", None) is not None:
      total += jnp.sum(jnp.sum(g * x_hat, axis=1) ** 2, -1)
    if getattr(module, "bias", None) is not None:
      total += _bias_sq_norm(g)
    return total


class _Embed:
  params = ("embedding",)

  @staticmethod
  def record(module, x, out):
    return x.reshape(x.shape[0], -1)

  @staticmethod
  def sq_norm(module, ids, g):
    g = flatten_positions(g)
    same = ids[:, :, None] == ids[:, None, :]
    return jnp.sum(same * jnp.einsum("bto,bso->bts", g, g), axis=(1, 2))


RULES = {
  nnx.Linear: _Dense,
  nnx.Conv: ConvRule,
  nnx.Embed: _Embed,
  nnx.LayerNorm: _Norm,
  nnx.GroupNorm: _Norm,
  nnx.BatchNorm: _Norm,
}


@functools.cache
def _tapped(base: Any) -> type:
  rule = RULES[base]

  def __call__(self, x, *args, **kwargs):
    taps = _CONTEXT.get()
    path = taps["paths"][id(self)]
    taps["calls"][path] = taps["calls"].get(path, 0) + 1
    out = base.__call__(self, x, *args, **kwargs)
    taps["shapes"][path] = out.shape
    if taps["probes"] is not None:
      taps["saved"][path] = rule.record(self, x, out)
      out = out + taps["probes"][path]
    return out

  return type(f"Tapped{base.__name__}", (base,), {"__call__": __call__})


@contextlib.contextmanager
def _taps(model, probes):
  """Swaps every supported layer of `model` for its tapped class while active."""
  taps = {"paths": {}, "calls": {}, "shapes": {}, "saved": {}, "modules": {}, "probes": probes}
  for path, module in nnx.iter_modules(model):
    base = type(module)
    # A layer whose weights are not `nnx.Param` (frozen) is not trained: no gradient norm.
    if base in RULES and any(isinstance(getattr(module, n, None), nnx.Param) for n in RULES[base].params):
      check = getattr(RULES[base], "check", None)
      if check:
        check(module)
      taps["paths"][id(module)] = path
      taps["modules"][path] = module
      module.__class__ = _tapped(base)
  token = _CONTEXT.set(taps)
  try:
    yield taps
  finally:
    _CONTEXT.reset(token)


def _check_coverage(graphdef, params, rest, x) -> None:
  """Raises `UnsupportedModel` unless every parameter belongs to a tapped layer called once."""

  def trace(params, rest, x):
    model = nnx.merge(graphdef, params, rest)
    with _taps(model, None) as taps:
      model(x)
    covered = {path + (name,) for path, module in taps["modules"].items() for name in RULES[layer_class(module)].params}
    repeated = [p for p, n in taps["calls"].items() if n > 1]
    if repeated:
      raise UnsupportedModel(f"layer {'/'.join(map(str, repeated[0]))} is called more than once")
    uncovered = [k for k, _ in nnx.to_flat_state(params) if tuple(k) not in covered]
    if uncovered:
      raise UnsupportedModel(f"parameter {'/'.join(map(str, uncovered[0]))} has no ghost-norm rule")
    return 0

  jax.eval_shape(trace, params, rest, x)


def output_gradients(graphdef: nnx.GraphDef, params, rest, x, y) -> tuple[dict, dict, dict]:
  """One batched backward pass of one seed: ({path: each example's output gradient g},
  {path: what the layer's rule recorded of its input}, {path: the layer}) for every tapped layer.

  The summed loss's gradient with respect to a zero probe added to a layer's
  output is each example's own output gradient, as examples do not interact."""

  def probe_shapes():
    model = nnx.merge(graphdef, params, rest)
    with _taps(model, None) as taps:
      model(x)
    return taps["shapes"]

  dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  zeros = {path: jnp.zeros(shape, dtype) for path, shape in probe_shapes().items()}
  modules = {}  # filled while tracing: the layers' static settings (use_bias, ...)

  def summed_loss(probes):
    model = nnx.merge(graphdef, params, rest)
    with _taps(model, probes) as taps:
      logits = model(x)
    modules.update(taps["modules"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, taps["saved"]

  grads, saved = jax.grad(summed_loss, has_aux=True)(zeros)
  return grads, saved, modules


def ghost_norms_fn(graphdef: nnx.GraphDef):
  """f(params, rest, x, y) -> (B,) exact per-example gradient norms of one seed."""

  def per_example(params, rest, x, y):
    grads, saved, modules = output_gradients(graphdef, params, rest, x, y)
    total = jnp.zeros(x.shape[0], jnp.float32)
    for path, g in grads.items():
      rule = RULES[layer_class(modules[path])]
      total += rule.sq_norm(modules[path], saved[path], g)
    return jnp.sqrt(total)

  return per_example


def supports(graphdef, params, rest, x) -> bool:
  """Whether the ghost-norm rules cover the model (params of one seed)."""
  try:
    _check_coverage(graphdef, params, rest, x)
  except UnsupportedModel:
    return False
  return True
