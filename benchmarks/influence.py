"""TracIn's cost: against a training epoch of the same model, and against Captum's `TracInCP`.

1. Ours, per checkpoint and seed: M test examples against N training
   examples (`pruning.scores.tracin.influence_matrix`, exact over every
   parameter), against one training epoch of the same model (Adam, the
   tool's batch of 64 unless --batch), both after compilation, in one process.
2. Captum's `TracInCP` (PyTorch, `sample_wise_grads_per_batch=True`, its
   fastest full-parameter mode) on the same weights, inputs and checkpoint:
   the same (N, M) matrix, its largest difference from ours, and the time.

Models: `mlp` 784-256-256-10 and `cnn` (conv 32, pool, conv 64, pool, dense
128, head) on random 28x28x1 inputs with random labels (speed does not depend
on the pixels). Captum and PyTorch are benchmark-only dependencies:

    pip install torch==2.13.0 captum==0.9.0
    python benchmarks/influence.py [--xla default]

`--xla default` measures under XLA's own CPU flags instead of the ones the
`pruning` command applies (the first measurements, before 2026-12-05, did).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _data(n: int, seed: int):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, size=n)


def _train(name: str, x, y, epochs: int, batch: int = 64):
  import pruning
  from pruning.training import TrainConfig

  options = {"hidden": [256, 256]} if name == "mlp" else {}
  return pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model=name, options=options, seeds=[0], training=TrainConfig(epochs=epochs, batch_size=batch)),
    checkpoint_epochs=[1],
    dynamics_window=None,
    progress=False,
  )


def against_an_epoch(name: str, n: int, m: int, batch: int, repeats: int) -> dict:
  """Medians over `repeats` alternating runs: the machine is shared, and one difference of two
  training runs has been seen off by 3x."""
  from pruning.scores.tracin import influence_matrix

  x, y = _data(n, 0)
  test_x, test_y = _data(m, 1)
  _train(name, x, y, 1, batch)  # compiles
  epochs, tracins = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    _train(name, x, y, 1, batch)
    one = time.perf_counter() - start
    start = time.perf_counter()
    models = _train(name, x, y, 3, batch)
    three = time.perf_counter() - start
    epochs.append((three - one) / 2)  # what is not an epoch (placing the data, initialising) cancels out
    if not tracins:
      influence_matrix(models, x[:512], y[:512], test_x, test_y, epochs=[1], learning_rates=[1.0])  # compiles
    start = time.perf_counter()
    influence_matrix(models, x, y, test_x, test_y, epochs=[1], learning_rates=[1.0])
    tracins.append(time.perf_counter() - start)
  return {"epoch": float(np.median(epochs)), "tracin": float(np.median(tracins))}


class _NHWCFlatten:
  """Flattens NCHW activations in NHWC order, as the JAX model does."""

  def __new__(cls):
    import torch

    class Flatten(torch.nn.Module):
      def forward(self, h):
        return h.permute(0, 2, 3, 1).flatten(1)

    return Flatten()


def torch_copy(models):
  """The seed-0 JAX model as a PyTorch module with the same weights."""
  import jax
  import torch
  from flax import nnx
  from torch import nn

  params = nnx.to_pure_dict(jax.tree.map(lambda a: np.asarray(a[0]), models.state_at(1)[0]))

  def linear(p):
    layer = nn.Linear(*p["kernel"].shape)
    layer.weight.data = torch.from_numpy(p["kernel"].T.copy())
    layer.bias.data = torch.from_numpy(p["bias"].copy())
    return layer

  def conv(p):
    layer = nn.Conv2d(p["kernel"].shape[2], p["kernel"].shape[3], 3, padding=1)
    layer.weight.data = torch.from_numpy(p["kernel"].transpose(3, 2, 0, 1).copy())
    layer.bias.data = torch.from_numpy(p["bias"].copy())
    return layer

  if models.model == "mlp":
    hidden = [linear(params["hidden"][i]) for i in sorted(params["hidden"])]
    return nn.Sequential(nn.Flatten(), hidden[0], nn.ReLU(), hidden[1], nn.ReLU(), linear(params["head"]))
  convs = [conv(params["convs"][i]) for i in sorted(params["convs"])]
  return nn.Sequential(
    convs[0],
    nn.ReLU(),
    nn.MaxPool2d(2),
    convs[1],
    nn.ReLU(),
    nn.MaxPool2d(2),
    _NHWCFlatten(),
    linear(params["dense"]),
    nn.ReLU(),
    linear(params["head"]),
  )


def against_captum(name: str, n: int, m: int) -> dict:
  import torch
  from captum.influence import TracInCP

  from pruning.scores.tracin import influence_matrix

  torch.set_num_threads(2)
  x, y = _data(n, 0)
  test_x, test_y = _data(m, 1)
  models = _train(name, x, y, 1)
  influence_matrix(models, x[:256], y[:256], test_x, test_y, epochs=[1], learning_rates=[1.0])  # compiles
  start = time.perf_counter()
  ours = influence_matrix(models, x, y, test_x, test_y, epochs=[1], learning_rates=[1.0])
  our_time = time.perf_counter() - start

  model = torch_copy(models)
  to_torch = lambda a: torch.from_numpy(models.normalizer(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
  train = torch.utils.data.TensorDataset(to_torch(x), torch.from_numpy(y.astype(np.int64)))
  with tempfile.TemporaryDirectory() as folder:
    checkpoint = Path(folder) / "checkpoint.pt"
    torch.save(model.state_dict(), checkpoint)

    def load(module, path):
      module.load_state_dict(torch.load(path))
      return 1.0  # the learning rate

    tracin = TracInCP(
      model,
      train,
      [str(checkpoint)],
      checkpoints_load_func=load,
      loss_fn=torch.nn.CrossEntropyLoss(reduction="sum"),
      batch_size=256,
      sample_wise_grads_per_batch=True,
    )
    start = time.perf_counter()
    theirs = tracin.influence((to_torch(test_x), torch.from_numpy(test_y.astype(np.int64)))).numpy().T
    captum_time = time.perf_counter() - start
  scale = np.abs(theirs).max()
  return {"ours": our_time, "captum": captum_time, "difference": float(np.abs(ours - theirs).max() / scale)}


def memory_worker(n: int, m: int, projection: int | None) -> None:
  """Prints the peak resident memory (MiB) a projected TracIn pass adds over N training examples."""
  import resource

  from pruning.scores.tracin import influence_matrix

  x, y = _data(n, 0)
  test_x, test_y = _data(m, 1)
  models = _train("mlp", x[:512], y[:512], 1)
  influence_matrix(models, x[:512], y[:512], test_x, test_y, epochs=[1], learning_rates=[1.0], projection=projection)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  influence_matrix(models, x, y, test_x, test_y, epochs=[1], learning_rates=[1.0], projection=projection)
  after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"{after - before:.0f}")


def memory_table(sizes: list[int], m: int) -> None:
  import subprocess
  import sys

  print("| N train | M test | exact: peak memory added (MiB) | projected k=16 (MiB) | the (N, M) result (MiB) |")
  print("|---|---|---|---|---|")
  for n in sizes:
    added = []
    for projection in ("none", "16"):
      out = subprocess.run(
        [sys.executable, __file__, "--memory-worker", str(n), str(m), projection],
        capture_output=True,
        text=True,
        check=True,
      )
      added.append(out.stdout.strip().splitlines()[-1])
    print(f"| {n:,} | {m:,} | {added[0]} | {added[1]} | {n * m * 4 / 2**20:.0f} |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
  parser.add_argument("--train", type=int, nargs=2, default=[60_000, 10_000], help="N for the mlp and the cnn")
  parser.add_argument("--test", type=int, default=1000)
  parser.add_argument("--batch", type=int, default=64, help="the training epoch's batch size (default: the tool's)")
  parser.add_argument("--repeats", type=int, default=3, help="runs of the epoch table; medians are reported")
  parser.add_argument("--captum-train", type=int, default=2000)
  parser.add_argument("--captum-test", type=int, nargs="+", default=[1000], help="M: one row per value")
  parser.add_argument("--skip-captum", action="store_true")
  parser.add_argument("--memory", action="store_true", help="only the memory table (mlp, N = 10k, 30k, 60k)")
  parser.add_argument("--memory-worker", nargs=3, help=argparse.SUPPRESS)
  parser.add_argument(
    "--xla",
    choices=("project", "default"),
    default="project",
    help="project: the XLA CPU flags the `pruning` command applies (`pruning.apply_xla_defaults`); default: XLA's own",
  )
  args = parser.parse_args()
  if args.xla == "project":
    import pruning

    pruning.apply_xla_defaults()  # before the first computation starts the CPU backend, as `pruning influence` does
  if args.memory_worker:
    n, m, projection = args.memory_worker
    memory_worker(int(n), int(m), None if projection == "none" else int(projection))
    return
  if args.memory:
    memory_table([10_000, 30_000, 60_000], args.test)
    return
  sizes = dict(zip(["mlp", "cnn"], args.train))
  print("| model | N train | M test | one training epoch, batch (s) | TracIn, one checkpoint (s) | ratio |")
  print("|---|---|---|---|---|---|")
  for name in args.models:
    r = against_an_epoch(name, sizes[name], args.test, args.batch, args.repeats)
    print(
      f"| {name} | {sizes[name]:,} | {args.test:,} | {r['epoch']:.1f}, {args.batch} | {r['tracin']:.1f} |"
      f" {r['tracin'] / r['epoch']:.2f}x |",
      flush=True,
    )
  if args.skip_captum:
    return
  print()
  print("| model | N train | M test | ours (s) | Captum TracInCP (s) | speed-up | largest difference / largest value |")
  print("|---|---|---|---|---|---|---|")
  for name in args.models:
    for m in args.captum_test:
      r = against_captum(name, args.captum_train, m)
      print(
        f"| {name} | {args.captum_train:,} | {m:,} | {r['ours']:.2f} | {r['captum']:.2f} |"
        f" {r['captum'] / r['ours']:.1f}x | {r['difference']:.1e} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
