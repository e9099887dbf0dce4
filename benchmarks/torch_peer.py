"""Our exact GraNd against the usual peer: PyTorch `torch.func.vmap(grad(...))`.

Identical architectures (`mlp` 784-512-512-10; `cnn`: conv 32, pool, conv
64, pool, dense 128, head) on the same random 28x28x1 batch, each side
measured after warm-up in its own process (PyTorch's idle OpenMP threads and
its heap would otherwise slow whichever runs next); prints examples per
second and our ratio.
PyTorch is a benchmark-only dependency:

    pip install torch==2.13.0
    python benchmarks/torch_peer.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def torch_model(name: str):
  from torch import nn

  if name == "mlp":
    return nn.Sequential(
      nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
  return nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(7 * 7 * 64, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
  )


def torch_grand(name: str, x: np.ndarray, y: np.ndarray, repeats: int) -> float:
  import torch
  import torch.nn.functional as F
  from torch.func import functional_call, grad, vmap

  torch.set_num_threads(2)
  model = torch_model(name)
  params = {k: v.detach() for k, v in model.named_parameters()}
  inputs = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # NCHW
  labels = torch.from_numpy(y.astype(np.int64))

  def loss(p, xi, yi):
    return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

  per_example = vmap(grad(loss), in_dims=(None, 0, 0))

  def norms():
    grads = per_example(params, inputs, labels)
    return torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads.values()))

  norms()
  start = time.perf_counter()
  for _ in range(repeats):
    norms()
  return len(y) * repeats / (time.perf_counter() - start)


def our_grand(name: str, x: np.ndarray, y: np.ndarray, repeats: int) -> float:
  import pruning
  from pruning.scores.grand import grand_values
  from pruning.training import TrainConfig

  options = {"hidden": [512, 512]} if name == "mlp" else {}
  models = pruning.train_models(
    pruning.TrainData(x=x[:64], y=y[:64], num_classes=10),
    pruning.ModelSpec(model=name, options=options, seeds=[0], training=TrainConfig(epochs=1, batch_size=64)),
    progress=False,
  )
  for _ in range(3):  # compilation, sizing the calls (pruning.runtime.call_size), the heap's warm-up
    grand_values(models, x, y, method="ghost")
  start = time.perf_counter()
  for _ in range(repeats):
    grand_values(models, x, y, method="ghost")
  return len(y) * repeats / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--worker", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=args.batch)
    side, name = args.worker
    print(json.dumps((our_grand if side == "ours" else torch_grand)(name, x, y, args.repeats)))
    return

  def measure(side, name):
    out = subprocess.run(
      [sys.executable, __file__, "--worker", side, name, "--batch", str(args.batch), "--repeats", str(args.repeats)],
      capture_output=True,
      text=True,
      check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])

  print("| model | batch | ours: exact GraNd, ghost norms (ex/s) | PyTorch torch.func vmap(grad) (ex/s) | ratio |")
  print("|---|---|---|---|---|")
  for name in args.models:
    ours, peer = measure("ours", name), measure("torch", name)
    print(f"| {name} | {args.batch} | {ours:.0f} | {peer:.0f} | {ours / peer:.1f}x |", flush=True)


if __name__ == "__main__":
  main()
