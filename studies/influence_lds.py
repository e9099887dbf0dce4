"""Study 12 (STUDIES.md): does TracIn predict what retraining does, and do the
proponents of a wrong prediction point at wrong labels?

1. Linear datamodeling score (LDS; Park et al. 2023, TRAK): K random halves
   S_k of the training split, a model retrained on each; for every test
   example j the Spearman correlation over k between the predicted
   `sum_{i in S_k} tau(i, j)` and the retrained model's margin on j
   (`z_y - logsumexp(z_other)`), averaged over j. Methods: exact TracIn,
   LoGra-projected TracIn, last-layer TracIn, influence through the inverse
   Fisher of the projected gradients (`--fisher-damping`), TRAK with its own
   library (`--trak K`), and per-example scores as a stand-in for attribution
   (`-sum_{i in S_k} score_i`, the same for every j).
2. Wrong labels: 20% of the training labels flipped; for each test example
   the proxies get wrong, the share of flipped examples among its 10 top
   proponents, against the 20% base rate.

    python studies/influence_lds.py --data digits mnist1d --subsets 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

import pruning
from pruning.scores import compute_scores
from pruning.scores.tracin import epoch_learning_rates, influence_matrix, tracin_epochs
from pruning.training import TrainConfig

MODEL = {"model": "mlp", "options": {"hidden": [128]}}


def proxies(dataset, epochs: int, seeds: int):
  spec = pruning.ProxySpec(
    model=MODEL["model"],
    model_options=MODEL["options"],
    training=TrainConfig(epochs=epochs, batch_size=64),
    seeds=seeds,
    scores=["el2n", "grand", "tracin_self"],
  )
  models = pruning.train_proxies(dataset, spec, progress=False)
  scores = compute_scores(models, dataset.train.x, dataset.train.y, spec.scores, progress=False)
  checkpoints = tracin_epochs(epochs, spec.tracin_checkpoints)
  rates = epoch_learning_rates(spec.training, models.num_steps, checkpoints)
  return models, {name: values.mean(0) for name, values in scores.items()}, checkpoints, rates


# Influence through the inverse Fisher of the projected gradients (`--fisher-damping`): (k, damping).
FISHER = [(32, 10.0), (32, 1.0), (32, 0.1), (32, 0.01), (16, 1.0), (64, 1.0)]


def influences(models, dataset, checkpoints, rates, test_rows) -> dict[str, np.ndarray]:
  train, test = dataset.train, dataset.test
  args = (models, train.x, train.y, test.x[test_rows], test.y[test_rows])
  out, seconds = {}, {}
  for name, extra in [
    ("TracIn, exact", {}),
    ("TracIn, projected k=16", {"projection": 16}),
    ("TracIn, last layer", {"layers": ("head",)}),
    *[(f"inverse Fisher, k={k}, damping {d:g}", {"projection": k, "damping": d}) for k, d in FISHER],
  ]:
    start = time.perf_counter()
    out[name] = influence_matrix(*args, epochs=checkpoints, learning_rates=rates, **extra)
    seconds[name] = time.perf_counter() - start
  return out, seconds


def trak_attributions(models, dataset, test_rows, proj_dim: int, folder) -> tuple[np.ndarray, float]:
  """TRAK (Park et al. 2023; `traker`, its authors' library, CPU with its `BasicProjector`) on the
  same proxies: each seed's final weights copied into an equivalent PyTorch MLP, an ensemble of
  `len(seeds)` models. (N, M) scores and the seconds they took (featurising and scoring)."""
  import torch
  from trak import TRAKer
  from trak.projectors import BasicProjector, ProjectionType

  torch.set_num_threads(2)
  x = models.normalizer(dataset.train.x).reshape(len(dataset.train.x), -1)
  test_x = models.normalizer(dataset.test.x[test_rows]).reshape(len(test_rows), -1)
  y, test_y = np.asarray(dataset.train.y, np.int64), np.asarray(dataset.test.y, np.int64)[test_rows]
  from flax import nnx

  params = nnx.to_pure_dict(models.state[0])  # stacked over seeds

  def linear(p, seed):
    layer = torch.nn.Linear(*p["kernel"].shape[1:])
    layer.weight.data = torch.from_numpy(np.asarray(p["kernel"][seed]).T.copy())
    layer.bias.data = torch.from_numpy(np.asarray(p["bias"][seed]).copy())
    return layer

  def torch_model(seed: int):
    layers: list = []
    for i in sorted(params["hidden"]):
      layers += [linear(params["hidden"][i], seed), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, linear(params["head"], seed)).eval()

  ours = models.logits(dataset.test.x[test_rows])
  for seed in range(len(models.seeds)):  # the copies compute what the proxies do
    theirs = torch_model(seed)(torch.from_numpy(np.ascontiguousarray(test_x))).detach().numpy()
    np.testing.assert_allclose(theirs, ours[seed], rtol=1e-4, atol=1e-4)
  start = time.perf_counter()
  first = torch_model(0)
  count = sum(p.numel() for p in first.parameters())
  projector = BasicProjector(
    grad_dim=count, proj_dim=proj_dim, seed=0, proj_type=ProjectionType.rademacher, device="cpu"
  )
  traker = TRAKer(
    model=first,
    task="image_classification",
    train_set_size=len(y),
    save_dir=str(folder),
    device="cpu",
    projector=projector,
    proj_dim=proj_dim,
    use_half_precision=False,
  )
  batches = (
    lambda a, b: [  # noqa: E731
      (torch.from_numpy(np.ascontiguousarray(a[i : i + 256])), torch.from_numpy(b[i : i + 256]))
      for i in range(0, len(b), 256)
    ]
  )
  for seed in range(len(models.seeds)):
    traker.load_checkpoint(torch_model(seed).state_dict(), model_id=seed)
    for batch in batches(x, y):
      traker.featurize(batch=batch, num_samples=len(batch[1]))
  traker.finalize_features()
  for seed in range(len(models.seeds)):
    traker.start_scoring_checkpoint("lds", torch_model(seed).state_dict(), model_id=seed, num_targets=len(test_y))
    for batch in batches(test_x, test_y):
      traker.score(batch=batch, num_samples=len(batch[1]))
  scores = traker.finalize_scores(exp_name="lds")
  return np.asarray(scores, np.float64), time.perf_counter() - start


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  correct = np.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  others = logits.copy()
  np.put_along_axis(others, labels[:, None], -np.inf, axis=1)
  top = others.max(1, keepdims=True)
  return correct - (top[:, 0] + np.log(np.exp(others - top).sum(1)))


def retrained_margins(dataset, subsets: np.ndarray, epochs: int, test_rows, *, together: bool = True) -> np.ndarray:
  """(K, M) margins of models retrained on each subset (seed k for subset k): all K in one
  vmapped program (`TrainData` rows per seed), or one after another (`together=False`)."""
  test_x, test_y = dataset.test.x[test_rows], np.asarray(dataset.test.y)[test_rows]
  training = TrainConfig(epochs=epochs, batch_size=64)
  if together:
    models = pruning.train_models(
      pruning.TrainData.from_dataset(dataset, rows=np.sort(subsets, axis=1)),
      pruning.ModelSpec(model=MODEL["model"], options=MODEL["options"], seeds=range(len(subsets)), training=training),
      dynamics_window=None,
      progress=False,
    )
    logits = models.logits(test_x)
    return np.stack([margins(logits[k], test_y) for k in range(len(subsets))])
  out = []
  for k, rows in enumerate(subsets):
    models = pruning.train_models(
      pruning.TrainData.from_dataset(dataset, rows=np.sort(rows)),
      pruning.ModelSpec(model=MODEL["model"], options=MODEL["options"], seeds=[k], training=training),
      dynamics_window=None,
      progress=False,
    )
    out.append(margins(models.logits(test_x)[0], test_y))
  return np.stack(out)


def lds(predicted: np.ndarray, actual: np.ndarray) -> float:
  """Mean over test examples of the Spearman correlation over subsets."""
  values = [spearmanr(predicted[:, j], actual[:, j])[0] for j in range(actual.shape[1])]
  return float(np.nanmean(values))


def datamodeling(
  name: str, subsets: int, epochs: int, tests: int, one_by_one: bool = False, trak: int | None = None
) -> list[dict]:
  dataset = pruning.load_dataset(name)
  rng = np.random.default_rng(0)
  test_rows = np.sort(rng.choice(len(dataset.test), size=min(tests, len(dataset.test)), replace=False))
  models, scores, checkpoints, rates = proxies(dataset, epochs, seeds=2)
  attributions, seconds = influences(models, dataset, checkpoints, rates, test_rows)
  if trak:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
      method = f"TRAK (traker, 2 models, k={trak})"
      attributions[method], seconds[method] = trak_attributions(models, dataset, test_rows, trak, folder)
  n = len(dataset.train)
  halves = np.stack([rng.permutation(n)[: n // 2] for _ in range(subsets)])
  masks = np.zeros((subsets, n))
  masks[np.arange(subsets)[:, None], halves] = 1.0
  start = time.perf_counter()
  actual = retrained_margins(dataset, halves, epochs, test_rows)
  print(f"{name}: {subsets} retrainings in one program: {time.perf_counter() - start:.1f} s", flush=True)
  if one_by_one:
    start = time.perf_counter()
    retrained_margins(dataset, halves, epochs, test_rows, together=False)
    print(f"{name}: {subsets} retrainings one after another: {time.perf_counter() - start:.1f} s", flush=True)
  rows = []
  for method, tau in attributions.items():
    rows.append({"data": name, "method": method, "lds": lds(masks @ tau, actual), "seconds": seconds[method]})
  for score, values in scores.items():  # one number per training example: the same prediction for every j
    predicted = np.repeat(-(masks @ values)[:, None], actual.shape[1], axis=1)
    rows.append({"data": name, "method": f"{score} (not pairwise)", "lds": lds(predicted, actual), "seconds": None})
  return rows


def wrong_label_proponents(name: str, epochs: int, top: int = 10) -> list[dict]:
  dataset = pruning.load_dataset(name, label_noise=0.2)
  flipped = dataset.train.y != dataset.train.clean_y
  models, _, checkpoints, rates = proxies(dataset, epochs, seeds=2)
  logits = models.logits(dataset.test.x).mean(0)
  errors = np.flatnonzero(logits.argmax(-1) != np.asarray(dataset.test.y))
  attributions, _ = influences(models, dataset, checkpoints, rates, errors)
  rows = []
  for method, tau in attributions.items():
    proponents = np.argsort(-tau, axis=0)[:top]
    opponents = np.argsort(tau, axis=0)[:top]
    rows.append(
      {
        "data": name,
        "method": method,
        "test errors": len(errors),
        f"flipped among top {top} proponents": float(flipped[proponents].mean()),
        f"flipped among top {top} opponents": float(flipped[opponents].mean()),
        "flipped overall": float(flipped.mean()),
      }
    )
  return rows


def markdown(table) -> str:
  """A DataFrame as a Markdown table, floats to 3 decimals (no `tabulate` needed)."""
  cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
  lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
  return "\n".join(lines)


def main():
  import pandas as pd

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", nargs="+", default=["digits", "mnist1d"])
  parser.add_argument("--subsets", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--tests", type=int, default=200)
  parser.add_argument("--figure", default="studies/influence_lds.png")
  parser.add_argument("--one-by-one", action="store_true", help="also time the retrainings one after another")
  parser.add_argument(
    "--trak", type=int, metavar="K", help="also TRAK with its library (`pip install traker torch`), projected to K"
  )
  args = parser.parse_args()
  table = pd.DataFrame(
    [
      row
      for name in args.data
      for row in datamodeling(name, args.subsets, args.epochs, args.tests, one_by_one=args.one_by_one, trak=args.trak)
    ]
  )
  print(markdown(table))
  print()
  noisy = pd.DataFrame([row for name in args.data for row in wrong_label_proponents(name, args.epochs)])
  print(markdown(noisy))
  if args.figure:
    from pruning.plots import finish_figure, pyplot

    plt = pyplot()
    figure, axes = plt.subplots(1, len(args.data), figsize=(4 + 4 * len(args.data), 3.6), squeeze=False, sharey=True)
    for axis, name in zip(axes[0], args.data):
      part = table[table["data"] == name]
      kinds = {"TracIn": "C0", "inverse Fisher": "C1", "TRAK": "C3"}
      colours = [next((c for k, c in kinds.items() if m.startswith(k)), "C7") for m in part["method"]]
      axis.barh(part["method"], part["lds"], color=colours)
      axis.axvline(0, color="black", linewidth=0.8)
      axis.set_title(f"{name}: LDS over {args.subsets} random halves")
      axis.set_xlabel("mean Spearman correlation (higher: better prediction)")
    axes[0, 0].invert_yaxis()  # shared: once
    figure.tight_layout()
    finish_figure(figure, args.figure, overwrite=True)


if __name__ == "__main__":
  main()
