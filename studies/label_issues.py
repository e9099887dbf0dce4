"""Which labels are wrong: pruning's flagging methods against cleanlab on the same noisy data.

For each dataset, noise kind (`symmetric`: to a uniformly drawn other class;
`pairs`: class c to c + 1, class-dependent) and rate, the proxies are scored
once (`score_dataset`: MLP with one hidden layer of 256, or `--proxy cnn`
the zoo's CNN; 3 seeds, 5 epochs) and every method flags:

- pruning's `ranked`, `confident_learning` and `aum_threshold` (each
  retraining what it needs: 5 folds of the 3-seed proxies, or two
  threshold-sample trainings), timed with the scoring they need;
- cleanlab's `find_label_issues` on the out-of-fold probabilities of
  scikit-learn's `MLPClassifier` (hidden layer of the proxies' width) from
  `cross_val_predict` with 5 folds, as its documentation does it, timed with
  that cross-validation (`cleanlab (sklearn MLP)`);
- cleanlab's `find_label_issues` on pruning's own out-of-fold probabilities
  (`cleanlab (same probabilities)`): the decision rule alone.

Precision, recall and F1 of the flagged set against the flipped labels, the
estimated number of wrong labels against the truth, and seconds. Then long
tail meets noise: digits at imbalance 20 with 20% symmetric noise, and how
many clean examples of the three rarest classes each method flags.

    python studies/label_issues.py                       # digits and mnist1d, 10/20/40%
    python studies/label_issues.py --datasets digits --rates 0.2
    python studies/label_issues.py --datasets mnist1d --rates 0.2 --skip-long-tail --proxy cnn
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import pruning

WIDTH = 256


MODEL = {"model": "mlp", "model_options": {"hidden": [WIDTH]}}


def _scored(spec: str, *, rate: float, kind: str, long_tail: float | None = None):
  from pruning.config import parse_config
  from pruning.data.transforms import label_noise

  dataset = {"spec": spec}
  if long_tail:
    dataset["long_tail"] = long_tail
  config = parse_config(
    {
      "name": "label_issues",
      "dataset": dataset,
      **MODEL,
      "proxy": {"seeds": 3, "epochs": 5},
      "scores": ["el2n", "aum"],
    }
  )
  data = label_noise(pruning.load_dataset(**config.dataset.options()), rate=rate, seed=0, kind=kind)
  start = time.perf_counter()
  manifest = pruning.score_dataset(data, config.proxy_spec(), pipeline_config=config.to_dict(), progress=False)
  return data, manifest, config, time.perf_counter() - start


def _row(name, flags, truth, seconds, estimate=None, **extra):
  tp = int((flags & truth).sum())
  precision = tp / max(int(flags.sum()), 1)
  recall = tp / max(int(truth.sum()), 1)
  return {
    "method": name,
    "flagged": int(flags.sum()),
    "precision": precision,
    "recall": recall,
    "f1": 2 * precision * recall / max(precision + recall, 1e-12),
    "estimated": estimate,
    "seconds": seconds,
    **extra,
  }


def _sklearn_probabilities(data, seed: int = 0) -> np.ndarray:
  from sklearn.model_selection import StratifiedKFold, cross_val_predict
  from sklearn.neural_network import MLPClassifier
  from sklearn.preprocessing import StandardScaler

  x = data.train.x.reshape(len(data.train), -1)
  x = StandardScaler().fit_transform(x)
  model = MLPClassifier(hidden_layer_sizes=(WIDTH,), max_iter=200, random_state=seed)
  folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
  return cross_val_predict(model, x, data.train.y, cv=folds, method="predict_proba")


def compare(spec: str, rate: float, kind: str, long_tail: float | None = None) -> list[dict]:
  from cleanlab.filter import find_label_issues

  from pruning.flagging import FlagOptions, flag_label_issues
  from pruning.flagging.training import out_of_fold_probabilities

  data, manifest, config, scoring = _scored(spec, rate=rate, kind=kind, long_tail=long_tail)
  truth = data.train.is_noisy
  labels = data.train.y
  rows = []
  flags_by = {}
  for method, options in (
    ("ranked", FlagOptions(method="ranked")),
    ("confident_learning", FlagOptions(method="confident_learning")),
    ("aum_threshold", FlagOptions(method="aum_threshold")),
    ("aum_threshold (per class)", FlagOptions(method="aum_threshold", per_class=True)),
  ):
    start = time.perf_counter()
    flagged = flag_label_issues(manifest, data, options=options, progress=False)
    seconds = time.perf_counter() - start + scoring
    flags = flagged.table.sort_values("index")["is_suspect"].to_numpy(bool)
    estimate = flagged.provenance["flagging"].get("estimated_per_class")
    rows.append(_row(method, flags, truth, seconds, None if estimate is None else round(sum(estimate))))
    flags_by[method] = flags
  start = time.perf_counter()
  probabilities = _sklearn_probabilities(data)
  flags = find_label_issues(labels, probabilities)
  rows.append(_row("cleanlab (sklearn MLP)", flags, truth, time.perf_counter() - start))
  flags_by["cleanlab (sklearn MLP)"] = flags
  start = time.perf_counter()
  ours = out_of_fold_probabilities(data, config.proxy_spec().model_spec, folds=5, progress=False)
  flags = find_label_issues(labels, ours)
  rows.append(_row("cleanlab (same probabilities)", flags, truth, time.perf_counter() - start))
  flags_by["cleanlab (same probabilities)"] = flags
  for row in rows:
    row.update(dataset=spec, kind=kind, rate=rate, truth=int(truth.sum()))
    if long_tail:
      counts = np.bincount(data.train.clean_y, minlength=data.num_classes)
      rare = np.argsort(counts)[:3]
      clean_rare = (~truth) & np.isin(data.train.clean_y, rare) & np.isin(labels, rare)
      flags = flags_by[row["method"]]
      row["clean rare flagged"] = f"{int((flags & clean_rare).sum())} of {int(clean_rare.sum())}"
  return rows


def _print(table: pd.DataFrame, columns: list[str]) -> None:
  print("| " + " | ".join(columns) + " |")
  print("|" + "---|" * len(columns))
  for row in table[columns].itertuples(index=False):
    cells = [f"{v:.3f}" if isinstance(v, float) and c not in ("seconds",) else str(v) for v, c in zip(row, columns)]
    cells = [f"{float(v):.1f}" if c == "seconds" else v for v, c in zip(cells, columns)]
    print("| " + " | ".join(cells) + " |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
  parser.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.2, 0.4])
  parser.add_argument("--kinds", nargs="+", default=["symmetric", "pairs"])
  parser.add_argument("--skip-long-tail", action="store_true")
  parser.add_argument("--proxy", default="mlp", choices=["mlp", "cnn"], help="the proxies (cleanlab's MLP stays)")
  args = parser.parse_args()
  if args.proxy == "cnn":
    MODEL.update(model="cnn", model_options={})
  pruning.apply_xla_defaults()
  rows = []
  for spec in args.datasets:
    for kind in args.kinds:
      for rate in args.rates:
        rows.extend(compare(spec, rate, kind))
        print(f"done {spec} {kind} {rate}", flush=True)
  table = pd.DataFrame(rows)
  _print(
    table,
    ["dataset", "kind", "rate", "truth", "method", "flagged", "precision", "recall", "f1", "estimated", "seconds"],
  )
  if not args.skip_long_tail:
    tail = pd.DataFrame(compare("digits", 0.2, "symmetric", long_tail=20))
    print("\nLong tail (digits, r = 20) with 20% symmetric noise:\n")
    _print(tail, ["method", "flagged", "precision", "recall", "f1", "estimated", "clean rare flagged", "seconds"])


if __name__ == "__main__":
  main()
