"""The flagged examples alone, for relabelling: a Parquet or CSV table.

One row per suspect: `example_id`, `given_label` and `likely_label` (and
their class names), the evidence and cutoff the decision read (no single
cutoff for `confident_learning`: empty), and for text the text columns; the
most suspicious first. Images are shown with
`pruning.flagging.suspects.plot_suspects` in a notebook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.runtime.atomic import atomic_path, check_writable
from pruning.runtime.spreadsheet import escape_formulas

SUFFIXES = (".parquet", ".csv")


def check_suspects_output(path, *, overwrite: bool) -> None:
  if Path(path).suffix not in SUFFIXES:
    raise UserError(f"--suspects {str(path)!r} must end in .parquet or .csv: name the table's format")
  check_writable(path, overwrite=overwrite)


def suspects_table(flagged: Manifest, dataset=None) -> pd.DataFrame:
  """The suspects of a flagged manifest, with given and likely labels and their names."""
  if "is_suspect" not in flagged.table:
    raise UserError("the manifest has no is_suspect column: flag it first with `pruning flag`")
  table = flagged.table[flagged.table["is_suspect"].to_numpy(bool)]
  names = None
  if dataset is not None and dataset.class_names:
    names = list(dataset.class_names)
  out = pd.DataFrame(
    {
      "example_id": table["example_id"].astype(str).to_numpy(),
      "index": table["index"].to_numpy(),
      "given_label": table["label"].to_numpy(),
      "likely_label": table["likely_label"].to_numpy(),
      "evidence": table["suspect_evidence"].to_numpy(),
      "cutoff": table["suspect_cutoff"].to_numpy(),
    }
  )
  if names is not None:
    out.insert(3, "given_class", [names[c] for c in out["given_label"]])
    out.insert(5, "likely_class", [names[c] for c in out["likely_label"]])
  if dataset is not None and dataset.is_text:
    texts = dataset.train.text[out["index"].to_numpy()].reshape(len(out), -1)
    for j, column in enumerate(dataset.text_columns):
      out[column] = texts[:, j]
  if "is_noisy" in table:
    out["is_noisy"] = table["is_noisy"].to_numpy(bool)
  # most suspicious first: the largest margin or hardest score, or the lowest AUM
  record = flagged.provenance.get("flagging") or {}
  ascending = record.get("method") == "aum_threshold" or record.get("harder") == "lower"
  out = out.sort_values("evidence", ascending=ascending, kind="stable").reset_index(drop=True)
  test = (record.get("test") or {}).get("suspects") or []
  if not test:
    return out
  # `--split all`: the test split's suspects after the training split's, by their own margin
  out.insert(1, "split", "train")
  rows = pd.DataFrame(test)
  if dataset is not None and dataset.test is not None:
    position = {str(i): k for k, i in enumerate(dataset.test.ids)}
    rows["index"] = [position.get(i, -1) for i in rows["example_id"]]
  else:
    rows["index"] = -1
  rows.insert(1, "split", "test")
  rows["cutoff"] = np.nan
  if names is not None:
    rows["given_class"] = [names[c] for c in rows["given_label"]]
    rows["likely_class"] = [names[c] for c in rows["likely_label"]]
  if dataset is not None and dataset.is_text and dataset.test is not None:
    known = rows["index"].to_numpy() >= 0
    texts = dataset.test.text[rows["index"].to_numpy()[known]].reshape(int(known.sum()), -1)
    for j, column in enumerate(dataset.text_columns):
      rows.loc[known, column] = texts[:, j]
  return pd.concat([out, rows[[c for c in out.columns if c in rows.columns]]], ignore_index=True)


def write_suspects(flagged: Manifest, dataset, path, *, overwrite: bool) -> Path:
  table = suspects_table(flagged, dataset)
  with atomic_path(path, overwrite=overwrite) as tmp:
    if str(path).endswith(".csv"):  # opened in spreadsheets to relabel: no cell may run as a formula
      escape_formulas(table).to_csv(tmp, index=False)
    else:
      table.to_parquet(tmp, index=False)
  return Path(path)


def plot_suspects(flagged: Manifest, dataset, *, count: int = 16, path=None, overwrite: bool = False):
  """The first `count` suspects as images (or curves), titled given -> likely class."""
  from pruning.plots import finish_figure, pyplot

  if dataset.is_text:
    raise UserError("text suspects are sentences: show them with suspects_table(flagged, dataset)")
  table = suspects_table(flagged, dataset).head(count)
  plt = pyplot()
  columns = min(8, max(len(table), 1))
  rows = max(1, -(-len(table) // columns))
  figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
  names = list(dataset.class_names) if dataset.class_names else [str(c) for c in range(dataset.num_classes)]
  for axis, row in zip(axes.ravel(), table.itertuples()):
    x = np.asarray(dataset.train.x[row.index], np.float64)
    if x.ndim >= 2:
      axis.imshow(x[..., 0] if x.shape[-1] == 1 else (x - x.min()) / max(np.ptp(x), 1e-12), cmap="gray")
    else:
      axis.plot(x, linewidth=1)
    axis.set_xticks([]), axis.set_yticks([])
    axis.set_title(f"{names[row.given_label]} -> {names[row.likely_label]}", fontsize=8)
  for axis in axes.ravel()[len(table) :]:
    axis.axis("off")
  figure.suptitle("Flagged examples: given -> likely label")
  figure.tight_layout()
  return finish_figure(figure, path, overwrite=overwrite)
