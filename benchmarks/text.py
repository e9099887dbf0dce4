"""Text: exact GraNd on the transformer against its training step and against Opacus; length bucketing.

1. `grand`: the `transformer` encoder (hidden 128, 2 layers, 4 heads, MLP
   512, vocabulary 8192, 4 classes) at batch 256 and length 128, every
   token real (no padding to trim). One subprocess per measurement, so peak
   resident memory is that computation's own; the median of `--repeats`
   calls after compilation:
   - `train_step`: one seed's Adam step, as `train_models` runs it;
   - `grand_ghost`: exact per-example gradient norms by ghost norms
     (`pruning.scores.grand.grand_values`, the `grand` score);
   - `el2n`: the forward pass the EL2N score needs;
   - `opacus_ghost`: the peer, Opacus's fast gradient clipping with ghost
     clipping (`GradSampleModuleFastGradientClipping`) on the same
     architecture in PyTorch (a `transformers` `BertModel` with dropout off
     and a linear head): one forward pass and the backward pass whose hooks
     compute every example's gradient norm (what clipping needs; the second,
     clipped backward pass of DP-SGD is not timed);
   - `torch_step`: a plain PyTorch Adam step of that model, for scale.
   Both frameworks use the machine's cores (torch: `torch.set_num_threads`).
2. `bucketing`: proxy training (`train_models`, 2 seeds, 2 epochs, batch 64)
   of the same transformer on `synthtext` tokenised to 128 (median 18
   tokens, a long tail to 128), with batches grouped by length and trimmed
   against fixed padding, alternating over `--rounds`; compilation included,
   as a user pays it.

    python benchmarks/text.py
    python benchmarks/text.py --parts grand --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODEL = {"hidden": 128, "layers": 2, "heads": 4, "mlp": 512, "vocab_size": 8192, "max_positions": 128}
CLASSES = 4
METHODS = ("train_step", "grand_ghost", "el2n", "opacus_ghost", "torch_step")


def _inputs(batch: int, length: int):
  import numpy as np

  rng = np.random.default_rng(0)
  ids = rng.integers(5, MODEL["vocab_size"], size=(batch, length))
  ids[:, 0] = 2
  return ids, rng.integers(0, CLASSES, size=batch)


def _timed(call, repeats: int) -> float:
  call()  # compile / warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def run_jax(method: str, batch: int, length: int, repeats: int) -> float:
  import jax
  import numpy as np

  import pruning

  pruning.apply_xla_defaults("transformer")  # no YNN fusions: measured faster for transformers
  from pruning.scores.grand import grand_values
  from pruning.training import TrainConfig

  ids, y = _inputs(batch, length)
  x = ids.astype(np.float32)
  if method == "train_step":
    from scores import one_seed_train_step  # benchmarks/scores.py, beside this script

    step = one_seed_train_step("transformer", MODEL, x, y, num_classes=CLASSES)
    return _timed(lambda: jax.block_until_ready(step()), repeats)
  models = pruning.train_models(
    pruning.TrainData(x=x[:8], y=y[:8], num_classes=CLASSES, normalize="none"),
    pruning.ModelSpec(model="transformer", options=MODEL, seeds=[0], training=TrainConfig(epochs=1, batch_size=8)),
    progress=False,
  )
  if method == "grand_ghost":
    return _timed(lambda: grand_values(models, x, y, method="ghost", rows_hint=batch), repeats)
  from pruning.scores import compute_scores

  return _timed(lambda: compute_scores(models, x, y, ["el2n"]), repeats)


def run_torch(method: str, batch: int, length: int, repeats: int) -> float:
  import torch
  import transformers

  torch.set_num_threads(os.cpu_count() or 1)
  config = transformers.BertConfig(
    vocab_size=MODEL["vocab_size"],
    hidden_size=MODEL["hidden"],
    num_hidden_layers=MODEL["layers"],
    num_attention_heads=MODEL["heads"],
    intermediate_size=MODEL["mlp"],
    max_position_embeddings=MODEL["max_positions"],
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    attn_implementation="eager",
  )

  class Classifier(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.bert = transformers.BertModel(config)
      self.head = torch.nn.Linear(MODEL["hidden"], CLASSES)

    def forward(self, ids, mask):
      # Position and token-type ids passed whole: Opacus's embedding rule needs contiguous (B, L) indices.
      positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1).contiguous()
      out = self.bert(input_ids=ids, attention_mask=mask, position_ids=positions, token_type_ids=torch.zeros_like(ids))
      return self.head(out.pooler_output)

  ids_np, y_np = _inputs(batch, length)
  ids, y = torch.tensor(ids_np), torch.tensor(y_np)
  mask = torch.ones_like(ids)
  model = Classifier()
  if method == "torch_step":
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def call():
      optimizer.zero_grad()
      torch.nn.functional.cross_entropy(model(ids, mask), y).backward()
      optimizer.step()

    return _timed(call, repeats)
  from opacus.grad_sample import GradSampleModuleFastGradientClipping

  wrapped = GradSampleModuleFastGradientClipping(model, loss_reduction="sum", use_ghost_clipping=True)

  def norms():
    wrapped.zero_grad()
    torch.nn.functional.cross_entropy(wrapped(ids, mask), y, reduction="none").sum().backward()
    return wrapped.get_norm_sample()

  return _timed(norms, repeats)


def measure(method: str, batch: int, length: int, repeats: int) -> dict:
  seconds = (run_torch if method in ("opacus_ghost", "torch_step") else run_jax)(method, batch, length, repeats)
  return {"method": method, "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def grand_part(args) -> None:
  rows = []
  for method in METHODS:
    out = subprocess.run(
      [
        sys.executable,
        __file__,
        "--one",
        method,
        "--batch",
        str(args.batch),
        "--length",
        str(args.length),
        "--repeats",
        str(args.repeats),
      ],
      capture_output=True,
      text=True,
      check=True,
    )
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
  by = {r["method"]: r for r in rows}
  step = by["train_step"]
  print(f"\nbatch {args.batch}, length {args.length}, transformer {MODEL}\n")
  print("| computation | examples/s | x JAX training step | peak RSS (MB) | peak / JAX step |")
  print("|---|---|---|---|---|")
  for r in rows:
    rate = args.batch / r["seconds"]
    print(
      f"| {r['method']} | {rate:,.0f} | {step['seconds'] / r['seconds']:.2f} | {r['peak_mb']:.0f}"
      f" | {r['peak_mb'] / step['peak_mb']:.2f} |"
    )
  ratio = by["opacus_ghost"]["seconds"] / by["grand_ghost"]["seconds"]
  print(f"\nGraNd (ghost) against Opacus ghost clipping: {ratio:.2f}x")


def bucketing_part(args) -> None:
  import numpy as np

  import pruning

  pruning.apply_xla_defaults("transformer")  # no YNN fusions: measured faster for transformers
  from pruning.training import TrainConfig

  data = pruning.load_dataset("synthtext", vocab_size=MODEL["vocab_size"], max_length=128)
  lengths = data.sequence_lengths()
  print(
    f"\nsynthtext at 128 tokens: lengths median {np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f},"
    f" p99 {np.percentile(lengths, 99):.0f}, max {lengths.max()}"
  )
  times: dict[bool, list[float]] = {True: [], False: []}
  for _ in range(args.rounds):
    for bucketed in (False, True):
      start = time.perf_counter()
      pruning.train_models(
        pruning.TrainData(x=data.train.x, y=data.train.y, num_classes=4, normalize="none", lengths=lengths),
        pruning.ModelSpec(
          model="transformer",
          options={**MODEL, **data.model_options()},
          seeds=[0, 1],
          training=TrainConfig(epochs=2, batch_size=64, bucket_by_length=bucketed),
        ),
        progress=False,
      )
      times[bucketed].append(time.perf_counter() - start)
  fixed, bucketed = statistics.median(times[False]), statistics.median(times[True])
  print("\n| batches | proxy training, 2 seeds x 2 epochs (s) | speed-up |")
  print("|---|---|---|")
  print(f"| fixed padding to 128 | {fixed:.1f} ({min(times[False]):.1f}-{max(times[False]):.1f}) | 1.00 |")
  spread = f"{min(times[True]):.1f}-{max(times[True]):.1f}"
  print(f"| grouped by length, trimmed | {bucketed:.1f} ({spread}) | {fixed / bucketed:.2f} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--parts", nargs="+", default=["grand", "bucketing"], choices=["grand", "bucketing"])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(json.dumps(measure(args.one, args.batch, args.length, args.repeats)))
    return
  if "grand" in args.parts:
    grand_part(args)
  if "bucketing" in args.parts:
    bucketing_part(args)


if __name__ == "__main__":
  main()
