"""Remedies for class imbalance at training time, registered by name in `REMEDIES`.

Each turns the training rows' class counts n_c (N rows, C classes present)
into what retraining does differently. Every arm keeps the same number of
optimisation steps whatever its remedy (the step budget of `retrain`).

- `none`: train as the data comes.
- `oversample` (Buda et al., 2018): each epoch draws N rows with
  replacement, a row of class c with probability proportional to
  n_c^(-q), so class c fills a share n_c^(1 - q) / sum_k n_k^(1 - q) of the
  batches: `sampling_power` q = 1 balances the classes, 0.5 is square-root
  sampling, 0 the natural frequencies.
- `undersample`: each epoch takes min_c n_c rows of every class, without
  replacement (more, shorter epochs in the same steps; a batch holds at most
  one epoch, so with very rare classes the batches are smaller too).
- `reweight`: the loss of a row of class c is weighted by 1 / n_c or, with
  `beta` in [0, 1), by Cui et al.'s (CVPR 2019) inverse effective number
  (1 - beta) / (1 - beta^n_c); normalised so the mean weight over the rows
  is 1.
- `logit_adjust` (Menon et al., ICLR 2021): the loss sees the logits plus
  `tau * log prior_c`, with prior_c = n_c / N; predictions do not.
- `threshold` (Buda et al.'s thresholding; Menon et al.'s post-hoc logit
  adjustment): trained as `none`, then predicts from the logits minus
  `tau * log prior_c`.
- `smote`, `borderline_smote`, `adasyn`: imbalanced-learn's `SMOTE`,
  `BorderlineSMOTE` and `ADASYN` (`k_neighbors`, `seed`). With `space="input"`
  (the default) on the flattened, standardised training rows, and the model
  trained on real and synthetic rows; with `space="features"` on the
  penultimate features of the model trained on the real rows (its
  `features(x)`, the head's input), after which only the head (the final
  `nnx.Linear`) is re-fitted on real and synthetic features for
  `head_epochs` epochs (Adam, learning rate 1e-3), the body untouched: SMOTE
  where the classes are separable, for images as for tables (Kang et al.'s
  classifier re-training). The synthetic rows are used for training only
  (never scored, selected or exported) and counted in the results.

A class absent from the training rows gets no sampling weight and no loss
weight, and, for the logit offsets, the smallest prior of the classes present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pruning.data.normalization import Normalizer
from pruning.errors import UserError
from pruning.registry import Registry
from pruning.retraining.options import RemedyOptions
from pruning.training import ClassBalance


@dataclasses.dataclass
class RemedyPlan:
  """What retraining does differently: a class balance for the training loop,
  an offset added to the test logits, or training arrays with synthetic rows."""

  balance: ClassBalance | None = None
  predict_offset: np.ndarray | None = None
  x: np.ndarray | None = None  # replaces the training inputs (already standardised), rows = all of them
  y: np.ndarray | None = None
  synthetic: int = 0
  record: dict = dataclasses.field(default_factory=dict)
  # After training: (models, normalizer) -> (models, synthetic rows); re-fits what the remedy changes.
  after_training: Callable[..., tuple] | None = None


@dataclasses.dataclass(frozen=True)
class Remedy:
  prepare: Callable[..., RemedyPlan]  # prepare(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan
  options: tuple[str, ...] = ()
  takes_columns: bool = False  # prepare also gets feature_columns= (a table's column names: one-hot groups)


REMEDIES: Registry[Remedy] = Registry("remedy")


def register_remedy(name: str, *, description: str, options: tuple[str, ...] = (), takes_columns: bool = False):
  """Decorator: registers `prepare(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan` as `name`
  (`takes_columns`: prepare also takes `feature_columns`, the table's column names)."""

  def decorate(prepare):
    REMEDIES.register(name, Remedy(prepare, tuple(options), takes_columns), description=description)
    return prepare

  return decorate


# Options that go with another option rather than with a remedy's declared list.
_COMPANIONS = {"head_epochs": "space", "seed": "space"}


def check_remedy_options(remedies, given: dict, *, flags: dict[str, str] | None = None) -> None:
  """Refuses a remedy option that none of `remedies` reads (`--sampling-power`
  without `--remedy oversample` did nothing, silently). `flags` names each
  option as the user wrote it (CLI flags)."""
  used = set()
  for name in remedies:
    used |= set(REMEDIES.get(name).options)
  for given_option in given:
    if given_option in used or _COMPANIONS.get(given_option) in used:
      continue
    readers = [
      n for n, r in REMEDIES.items() if given_option in r.options or _COMPANIONS.get(given_option) in r.options
    ]
    shown = (flags or {}).get(given_option, given_option)
    raise UserError(
      f"{shown} has no effect with remedy {', '.join(remedies)}: it goes with"
      f" {' or '.join(readers) or 'no remedy'}; choose one of those, or drop it"
    )


def class_counts(y: np.ndarray, rows: np.ndarray, num_classes: int) -> np.ndarray:
  return np.bincount(np.asarray(y)[rows], minlength=num_classes).astype(np.int64)


def inverse_frequency_weights(counts: np.ndarray) -> np.ndarray:
  """w_c proportional to 1 / n_c, with mean weight 1 over the rows (0 for absent classes)."""
  raw = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
  return raw * counts.sum() / np.sum(counts * raw)


def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
  """w_c proportional to (1 - beta) / (1 - beta^n_c) (Cui et al.), with mean weight 1 over the rows."""
  raw = np.where(counts > 0, (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts, 1))), 0.0)
  return raw * counts.sum() / np.sum(counts * raw)


def log_prior(counts: np.ndarray) -> np.ndarray:
  """log(n_c / N), absent classes at the smallest prior present."""
  prior = counts / counts.sum()
  floor = prior[prior > 0].min()
  return np.log(np.where(prior > 0, prior, floor))


@register_remedy("none", description="train as the data comes")
def _none(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan:
  return RemedyPlan()


@register_remedy(
  "oversample",
  description="sampling with replacement, class c's share of batches ~ n_c^(1-q) (--sampling-power q; 1: balanced)",
  options=("sampling_power",),
)
def _oversample(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan:
  counts = class_counts(y, rows, num_classes)
  # A row's chance is n_c^(-q), so class c's share is n_c * n_c^(-q) = n_c^(1 - q) (q = 1: equal shares).
  weights = np.where(counts > 0, np.power(np.maximum(counts, 1).astype(np.float64), -options.sampling_power), 0.0)
  return RemedyPlan(balance=ClassBalance(sampling="weighted", sampling_weights=tuple(float(w) for w in weights)))


@register_remedy("undersample", description="every epoch takes min_c n_c rows of each class, without replacement")
def _undersample(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan:
  return RemedyPlan(balance=ClassBalance(sampling="undersample"))


@register_remedy(
  "reweight", description="loss weights 1/n_c, or Cui et al.'s effective number with --beta", options=("beta",)
)
def _reweight(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan:
  counts = class_counts(y, rows, num_classes)
  weights = (
    inverse_frequency_weights(counts) if options.beta is None else effective_number_weights(counts, options.beta)
  )
  return RemedyPlan(balance=ClassBalance(class_weights=tuple(float(w) for w in weights)))


@register_remedy("logit_adjust", description="Menon et al.'s loss: logits + tau * log prior (--tau)", options=("tau",))
def _logit_adjust(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan:
  offset = options.tau * log_prior(class_counts(y, rows, num_classes))
  return RemedyPlan(balance=ClassBalance(logit_offset=tuple(float(v) for v in offset)))


@register_remedy(
  "threshold", description="predict from logits - tau * log prior (post-hoc; Buda et al.)", options=("tau",)
)
def _threshold(x, y, rows, *, num_classes, normalizer, options) -> RemedyPlan:
  return RemedyPlan(predict_offset=-options.tau * log_prior(class_counts(y, rows, num_classes)))


def _check_neighbours(name: str, labels: np.ndarray, num_classes: int, options) -> None:
  counts = np.bincount(labels, minlength=num_classes)
  present = counts[counts > 0]
  if len(present) < 2:
    raise UserError(f"{name} needs at least two classes in the training rows")
  if present.min() <= options.k_neighbors and name != "adasyn":
    raise UserError(
      f"{name}: the smallest class has {int(present.min())} examples, too few for k_neighbors="
      f"{options.k_neighbors}: lower --k-neighbors below {int(present.min())} or keep more of that class"
    )


def _oversampled(name: str, features: np.ndarray, labels: np.ndarray, num_classes: int, options) -> tuple:
  """imbalanced-learn's resampler `name` on (N, D) float32 rows: (rows out, labels out)."""
  import imblearn.over_sampling as over_sampling

  _check_neighbours(name, labels, num_classes, options)
  sampler = {
    "smote": over_sampling.SMOTE,
    "borderline_smote": over_sampling.BorderlineSMOTE,
    "adasyn": over_sampling.ADASYN,
  }[name]
  neighbours = {"n_neighbors": options.k_neighbors} if name == "adasyn" else {"k_neighbors": options.k_neighbors}
  try:
    x_out, y_out = sampler(random_state=options.seed, **neighbours).fit_resample(features, labels)
  except (ValueError, RuntimeError) as error:
    raise UserError(f"{name} failed on these rows ({str(error).splitlines()[0][:200]}): try another remedy") from None
  return np.asarray(x_out, np.float32), np.asarray(y_out, np.int64)


def _resampler(name: str):
  def prepare(x, y, rows, *, num_classes, normalizer, options, feature_columns=()) -> RemedyPlan:
    labels = np.asarray(y)[rows]
    if options.space == "features":
      return RemedyPlan(
        after_training=lambda models, normalizer: _refit_head(
          name, models, normalizer, x, labels, rows, num_classes, options
        )
      )
    raw = np.asarray(x[rows])
    flat = np.asarray(normalizer(raw), np.float32).reshape(len(rows), -1)
    groups = one_hot_groups(feature_columns) if len(feature_columns) == flat.shape[1] else {}
    if groups and name != "smote":
      raise UserError(
        f"{name} would interpolate the one-hot encoded columns ({', '.join(groups)}) into fractions of a"
        " category: use smote (SMOTENC for encoded columns) or oversample"
      )
    if groups:
      x_out, y_out = _smote_nc(flat, raw.reshape(len(rows), -1), labels, groups, normalizer, num_classes, options)
    else:
      x_out, y_out = _oversampled(name, flat, labels, num_classes, options)
    x_out = x_out.reshape(len(x_out), *np.shape(x)[1:])
    return RemedyPlan(x=x_out, y=y_out, synthetic=len(x_out) - len(rows))

  return prepare


def one_hot_groups(columns) -> dict[str, list[int]]:
  """The one-hot encoded columns of a table (`COLUMN=VALUE`, as `--categorical onehot` names them), by column."""
  groups: dict[str, list[int]] = {}
  for index, name in enumerate(columns):
    if "=" in name:
      groups.setdefault(name.split("=", 1)[0], []).append(index)
  return groups


def _smote_nc(flat, raw, labels, groups, normalizer, num_classes, options) -> tuple:
  """imbalanced-learn's SMOTENC: SMOTE for the numeric columns, the most frequent
  value among the neighbours for each one-hot encoded column, which plain SMOTE
  would interpolate into fractions of categories. Returns standardised rows."""
  from imblearn.over_sampling import SMOTENC

  encoded = [i for members in groups.values() for i in members]
  numeric = [i for i in range(flat.shape[1]) if i not in set(encoded)]
  codes = np.stack([raw[:, members].argmax(axis=1) for members in groups.values()], axis=1)
  reduced = np.concatenate([flat[:, numeric].astype(np.float64), codes.astype(np.float64)], axis=1)
  categorical = list(range(len(numeric), reduced.shape[1]))
  _check_neighbours("smote", labels, num_classes, options)
  try:
    sampler = SMOTENC(categorical_features=categorical, k_neighbors=options.k_neighbors, random_state=options.seed)
    out, y_out = sampler.fit_resample(reduced, labels)
  except (ValueError, RuntimeError) as error:
    raise UserError(f"smote failed on these rows ({str(error).splitlines()[0][:200]}): try another remedy") from None
  # A 0/1 column's standardised values: the normalizer is affine per feature.
  width = raw.shape[1]
  zero = np.asarray(normalizer(np.zeros((1, width), raw.dtype)), np.float32).reshape(-1)
  one = np.asarray(normalizer(np.ones((1, width), raw.dtype)), np.float32).reshape(-1)
  rows = np.empty((len(out), flat.shape[1]), np.float32)
  rows[:, numeric] = out[:, : len(numeric)]
  for g, members in enumerate(groups.values()):
    chosen = out[:, len(numeric) + g].astype(np.int64)
    for k, column in enumerate(members):
      rows[:, column] = np.where(chosen == k, one[column], zero[column])
  return rows, np.asarray(y_out, np.int64)


def _refit_head(name, models, normalizer, x, labels, rows, num_classes, options) -> tuple:
  """SMOTE on each seed's penultimate features, then the head re-fitted on real and synthetic features."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  probe = nnx.merge(models.graphdef, *jax.tree.map(lambda a: a[0], models.state))
  if not callable(getattr(probe, "features", None)) or not isinstance(getattr(probe, "head", None), nnx.Linear):
    raise UserError(
      f"{name} in feature space needs a model with features(x) and a final nnx.Linear `head` ({models.model!r}"
      " has not): use space='input', or give the model both (as the zoo's models have)"
    )
  features_of = jax.jit(lambda params, rest, batch: nnx.merge(models.graphdef, params, rest).features(batch))
  optimizer = optax.adam(1e-3)

  def loss(head, h, y):
    logits = h @ head["kernel"] + head["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(head, opt_state, h, y):
    grads = jax.grad(loss)(head, h, y)
    updates, opt_state = optimizer.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state

  new_states, synthetic = [], 0
  for s in range(len(models.seeds)):
    params, rest = jax.tree.map(lambda a, seed=s: a[seed], models.state)
    h = (
      np.concatenate(
        [
          np.asarray(features_of(params, rest, jnp.asarray(normalizer(np.asarray(x[rows[i : i + 1024]])))))
          for i in range(0, len(rows), 1024)
        ]
      )
      .reshape(len(rows), -1)
      .astype(np.float32)
    )
    h_out, y_out = _oversampled(name, h, labels, num_classes, options)
    synthetic = len(h_out) - len(rows)
    model = nnx.merge(models.graphdef, params, rest)
    head = {"kernel": jnp.asarray(model.head.kernel[...]), "bias": jnp.asarray(model.head.bias[...])}
    opt_state = optimizer.init(head)
    rng = np.random.default_rng(options.seed)
    for _ in range(options.head_epochs):
      order = rng.permutation(len(h_out))
      for start in range(0, len(order), 256):
        batch = order[start : start + 256]
        head, opt_state = step(head, opt_state, jnp.asarray(h_out[batch]), jnp.asarray(y_out[batch]))
    model.head.kernel[...] = head["kernel"]
    model.head.bias[...] = head["bias"]
    parts: tuple = nnx.split(model, nnx.Param, ...)  # (graphdef, params, rest)
    new_states.append(jax.tree.map(np.asarray, parts[1:]))
  state = tuple(jax.tree.map(lambda *leaves: np.stack(leaves), *new_states))
  return dataclasses.replace(models, state=state), synthetic


for _name, _text in (
  (
    "smote",
    "imbalanced-learn's SMOTE: minority rows interpolated towards k nearest neighbours (SMOTENC when"
    " --categorical onehot encoded columns: a neighbour's category, never a fraction of one)",
  ),
  ("borderline_smote", "imbalanced-learn's BorderlineSMOTE: SMOTE from the minority rows near the border"),
  ("adasyn", "imbalanced-learn's ADASYN: more synthetic rows where the minority is harder to learn"),
):
  register_remedy(
    _name,
    description=_text + " (--k-neighbors, --remedy-seed, --smote-space)",
    options=("k_neighbors", "seed", "space"),
    takes_columns=True,
  )(_resampler(_name))


IDENTITY = Normalizer.fit(np.zeros((1, 1), np.float32), mode="none")


INTERPOLATING = ("smote", "borderline_smote", "adasyn")


def check_remedy_data(dataset, remedy: str, options: RemedyOptions) -> None:
  """Refuses SMOTE and its family on token ids in input space: ids are codes, not points to interpolate."""
  if dataset.is_text and remedy in INTERPOLATING and options.space == "input":
    raise UserError(
      f"{remedy} interpolates between input rows, and token ids are codes, not points: use"
      " --smote-space features (SMOTE on the model's penultimate features) or oversample"
    )
