"""VoG by training stage: which flipped labels does VoG find early, late, or over all of training?

Agarwal et al. (2022) report that VoG ranks examples differently early and
late in training. For each dataset, one proxy training (S seeds) feeds three
VoG accumulators at once, reading the `early` (first half), `late` (second
half) and `all` epochs (`pruning.scores.vog.checkpoint_epochs`), and the
script prints each one's AUROC and AUPRC at ranking the flipped labels above
the clean ones (`vog`: class-normalised, as the paper), beside EL2N and the
loss at the end of training:

- `digits` with 20% symmetric label noise, the MLP, 12 epochs;
- `synthtext` with 10% symmetric label noise, the transformer, 8 epochs.

    python studies/vog_windows.py
    python studies/vog_windows.py --datasets digits --seeds 5
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import pruning

SETUPS = {
  "digits": {
    "load": {"spec": "digits", "label_noise": 0.2},
    "model": "mlp",
    "options": {"hidden": [256, 256]},
    "epochs": 12,
  },
  "synthtext": {
    "load": {"spec": "synthtext", "label_noise": 0.1, "vocab_size": 2000, "max_length": 64},
    "model": "transformer",
    "options": {"hidden": 64, "layers": 2, "heads": 4, "mlp": 128},
    "epochs": 8,
  },
}


def study(name: str, seeds: int) -> pd.DataFrame:
  from sklearn.metrics import average_precision_score, roc_auc_score

  from pruning.scores import compute_scores
  from pruning.scores.vog import VoGAccumulator, checkpoint_epochs, normalize
  from pruning.training import TrainConfig

  setup = SETUPS[name]
  data = pruning.load_dataset(**setup["load"])
  x, y, noisy = data.train.x, data.train.y, data.train.is_noisy
  pad_id = int(data.tokenizer["pad_id"]) if data.tokenizer else None
  epochs = setup["epochs"]
  hooks = {
    window: VoGAccumulator(x, y, epochs=checkpoint_epochs(epochs, None, window), pad_id=pad_id)
    for window in ("early", "late", "all")
  }
  models = pruning.train_models(
    pruning.TrainData(
      x=x, y=y, num_classes=data.num_classes, normalize=data.normalize, lengths=data.sequence_lengths()
    ),
    pruning.ModelSpec(
      model=setup["model"],
      options={**setup["options"], **data.model_options()},
      seeds=range(seeds),
      training=TrainConfig(epochs=epochs, batch_size=64),
    ),
    epoch_hooks=list(hooks.values()),
    desc=f"{name} proxies",
  )
  rows = []
  for window, hook in hooks.items():
    values = normalize(hook.raw(), y, "class").mean(axis=0)
    rows.append((f"vog ({window}: epochs {min(hook.epochs)}-{max(hook.epochs)})", values))
  final = compute_scores(models, x, y, ["el2n", "loss"], progress=False)
  for score in ("el2n", "loss"):
    rows.append((f"{score} (epoch {epochs})", np.asarray(final[score]).mean(axis=0)))
  return pd.DataFrame(
    [
      {
        "dataset": name,
        "score": label,
        "auroc": roc_auc_score(noisy, values),
        "auprc": average_precision_score(noisy, values),
      }
      for label, values in rows
    ]
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args()
  pruning.apply_xla_defaults()
  table = pd.concat([study(name, args.seeds) for name in args.datasets], ignore_index=True)
  print("| dataset | score | AUROC | AUPRC |\n|---|---|---:|---:|")
  for row in table.itertuples():
    print(f"| {row.dataset} | {row.score} | {row.auroc:.3f} | {row.auprc:.3f} |")


if __name__ == "__main__":
  main()
