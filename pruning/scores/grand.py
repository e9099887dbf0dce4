"""GraNd: the norm of the per-example loss gradient, `||grad_w l(w, x, y)||_2`.

Paul, Ganguli, Dziugaite, "Deep Learning on a Data Diet", NeurIPS 2021.

- `grand`: exact, over all parameters. For models built from the layers in
  `pruning.scores.ghost_norms` (Linear, Conv, Embed, LayerNorm, GroupNorm,
  eval-mode BatchNorm), from one batched backward pass and per-layer norms,
  never materialising per-example gradients; for any other model, `vmap` of
  `grad` over examples in chunks sized to a memory budget
  (`GRAND_MEMORY_BYTES`). Tests hold both paths to a per-example loop.
- `grand_last_layer`: the closed form for the final dense layer
  `z = W^T h + b`: `||p - e_y||_2 * sqrt(||h||^2 + 1)` (as DeepCore's GraNd).
  It needs the model to expose `features(x)` (h) and `head` (the last
  `nnx.Linear`), as every model in the zoo does.

Both use the normalised inputs the proxies were trained on. `grand@0` is
GraNd at initialisation (which Kirsch, 2023, found no better than random).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pruning.errors import UserError
from pruning.runtime.call_size import rows_per_call
from pruning.scores.context import ScoringContext
from pruning.scores.ghost_norms import ghost_norms_fn, supports
from pruning.scores.registry import HARDER_HIGHER, register_score
from pruning.training import mesh as sharding
from pruning.training import pad_rows, trimmed

GRAND_MEMORY_BYTES = 1 << 30
GHOST_BATCH = 512


@functools.lru_cache(maxsize=32)
def _per_example_grad_norms(graphdef: nnx.GraphDef):
  """f(params, rest, x, y) -> (S, B) gradient norms, stacked params over seeds."""

  def norm_of_one(params, rest, x, y):
    def loss(p):
      logits = nnx.merge(graphdef, p, rest)(x[None])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y[None])[0]

    grads = jax.grad(loss)(params)
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))

  over_examples = jax.vmap(norm_of_one, in_axes=(None, None, 0, 0))
  return jax.jit(jax.vmap(over_examples, in_axes=(0, 0, None, None)))


@functools.lru_cache(maxsize=32)
def _ghost_grad_norms(graphdef: nnx.GraphDef, seed_map: str):
  return jax.jit(sharding.map_over_seeds(ghost_norms_fn(graphdef), (0, 0, None, None), seed_map))


GRAND_METHODS = ("auto", "ghost", "vmap")
_SUPPORTED: dict = {}
_ROWS: dict = {}


def _rows_per_call(fn, params, rest, mesh, x: np.ndarray, most: int) -> int:
  """`rows_per_call` for one of GraNd's programs, decided once per program and shape."""
  key = (fn, x.shape[1:], x.dtype.str, most, mesh)
  if key not in _ROWS:

    def args_for(rows):
      spec = sharding.batch_spec(mesh, rows, per_seed=False)
      return (
        params,
        rest,
        sharding.place(np.zeros((rows, *x.shape[1:]), x.dtype), spec),
        sharding.place(np.zeros(rows, np.int32), spec),
      )

    _ROWS[key] = rows_per_call(fn, args_for, most=most)
  return _ROWS[key]


def grand_values(
  models,
  x,
  y,
  *,
  epoch=None,
  method: str = "auto",
  memory_bytes: int = GRAND_MEMORY_BYTES,
  ghost_batch: int = GHOST_BATCH,
  rows_hint: int | None = None,
  progress: bool = False,
) -> np.ndarray:
  """Exact full-parameter GraNd of every seed: an (S, N) float32 array.

  `method="ghost"` uses per-layer ghost norms (`pruning.scores.ghost_norms`),
  `"vmap"` a chunked `vmap` of `grad`, and `"auto"` the first where the model
  allows it. Chunks are sized for `rows_hint` rows (default: N), so scoring a
  split in blocks or shards runs the same shapes as scoring it at once, and
  on CPU to keep each call's temporaries reusable (`pruning.runtime.call_size`).
  """
  from pruning.runtime.progress import progress_bar

  if method not in GRAND_METHODS:
    raise UserError(f"GraNd method {method!r} is unknown: use one of {', '.join(GRAND_METHODS)}")
  params, rest, mesh = models.placed_state(epoch)
  groups = models.width_groups(x)  # token ids: rows of one trimmed width at a time
  x = models.normalizer(x)
  y = np.asarray(y, np.int32)
  if method != "vmap":
    key = (models.graphdef, x.shape[1:])
    if key not in _SUPPORTED:  # tracing the model to check coverage costs a forward pass
      first = jax.tree.map(lambda a: a[0], (params, rest))
      first_params, first_rest = first
      _SUPPORTED[key] = supports(models.graphdef, first_params, first_rest, x[:1])
    if _SUPPORTED[key]:
      method, chunk, fn = (
        "ghost",
        min(ghost_batch, rows_hint or len(y)),
        _ghost_grad_norms(models.graphdef, sharding.seed_map(params, "unroll")),
      )
    elif method == "ghost":
      raise UserError(f"model {models.model!r} has layers without ghost-norm rules: use method 'vmap'")
  if method != "ghost":
    num_params = sum(int(np.prod(np.shape(p))) for p in jax.tree.leaves(params)) // len(models.seeds)
    # A chunk holds S x chunk per-example gradients, plus activations (a factor 4 margin).
    chunk = max(1, min(rows_hint or len(y), memory_bytes // (4 * 4 * num_params * len(models.seeds))))
    fn = _per_example_grad_norms(models.graphdef)
  most = chunk
  out = np.empty((len(models.seeds), len(y)), np.float32)
  bar = progress_bar(total=len(y), desc=f"GraNd ({method})", unit="example", enabled=progress)
  for group, width in groups:
    inputs = trimmed(x, width)
    chunk = _rows_per_call(fn, params, rest, mesh, inputs, most)
    spec = sharding.batch_spec(mesh, chunk, per_seed=False)
    for start in range(0, len(group), chunk):
      rows = group[start : start + chunk]
      part = inputs[rows[0] : rows[-1] + 1] if width is None else inputs[rows]
      batch = fn(
        params, rest, sharding.place(pad_rows(part, chunk), spec), sharding.place(pad_rows(y[rows], chunk), spec)
      )
      out[:, rows] = np.asarray(batch)[:, : len(rows)]
      bar.update(len(rows))
  bar.close()
  return out


@register_score(
  "grand",
  harder=HARDER_HIGHER,
  description="exact per-example gradient norm over all parameters",
  reference="Paul et al., NeurIPS 2021",
)
def grand(context: ScoringContext, epoch: int | None) -> np.ndarray:
  return grand_values(
    context.models, context.x, context.y, epoch=epoch, rows_hint=len(context.split_labels), progress=context.progress
  )


@functools.lru_cache(maxsize=32)
def _features_and_logits(graphdef: nnx.GraphDef, seed_map: str):
  def apply(params, rest, x):
    model = nnx.merge(graphdef, params, rest)
    h = model.features(x)
    return h, model.head(h)

  return jax.jit(sharding.map_over_seeds(apply, (0, 0, None), seed_map))


@register_score(
  "grand_last_layer",
  harder=HARDER_HIGHER,
  description="closed-form gradient norm of the last dense layer: ||p - e_y|| sqrt(||h||^2 + 1)",
  reference="Paul et al., NeurIPS 2021; DeepCore",
)
def grand_last_layer(context: ScoringContext, epoch: int | None) -> np.ndarray:
  models = context.models
  params, rest, _ = models.placed_state(epoch)
  fn = _features_and_logits(models.graphdef, sharding.seed_map(params, "loop"))
  x = models.normalizer(context.x)
  out = np.empty((len(models.seeds), len(x)), np.float32)
  # Padded batches sized for the whole split: blocks and shards run the same shapes.
  batch = min(1024, len(context.split_labels))
  for start in range(0, len(x), batch):
    rows = len(x[start : start + batch])
    try:
      h, logits = fn(params, rest, pad_rows(x[start : start + batch], batch))
      h, logits = h[:, :rows], logits[:, :rows]
    except AttributeError:
      raise UserError(
        f"model {models.model!r} has no `features`/`head`, which grand_last_layer needs:"
        " use `grand` or give the model both"
      ) from None
    probs = jax.nn.softmax(logits, axis=-1)
    error = probs - jax.nn.one_hot(context.y[start : start + batch], logits.shape[-1])
    out[:, start : start + batch] = np.asarray(
      jnp.linalg.norm(error, axis=-1) * jnp.sqrt(jnp.sum(jnp.square(h), axis=-1) + 1.0)
    )
  return out
