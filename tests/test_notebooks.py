"""Every notebook runs top to bottom (with `CI` set, on its small workload), and
its committed `.ipynb` matches its reviewable jupytext `.py` twin and holds
no outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
  assert {p.stem for p in NOTEBOOKS} >= {"tour_of_scores", "pruning_curves", "class_imbalance"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired_and_clean(path):
  import jupytext
  import nbformat

  notebook = nbformat.read(path, as_version=4)
  twin = jupytext.read(path.with_suffix(".py"))
  assert [c.source for c in notebook.cells] == [c.source for c in twin.cells], (
    f"{path.name} and its .py twin differ: run `jupytext --sync {path.with_suffix('.py')}`"
  )
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, f"{path.name} has committed outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
  import nbformat
  from nbclient import NotebookClient

  monkeypatch.setenv("CI", "true")
  # The kernel's own backend (inline), as in Jupyter: no MPLBACKEND forced.
  monkeypatch.delenv("MPLBACKEND", raising=False)
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path / "cache"))
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(
    notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  ).execute()
  errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
  assert not errors
  # Every cell that draws shows its figure, and the user's own pyplot figures still show after ours.
  for cell in notebook.cells:
    if cell.cell_type == "code" and re.search(r"\bplot_\w+\(|\bplt\.", cell.source):
      images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
      assert images, f"{path.name}: this plotting cell shows no figure:\n{cell.source}"
      calls = re.findall(r"\bplot_\w+\(", cell.source)
      if len(calls) == 1 and "plt." not in cell.source:  # one figure drawn: shown once, not twice
        assert len(images) == 1, f"{path.name}: this cell shows its figure {len(images)} times:\n{cell.source}"
  assert not list(path.parent.glob("*.png")), "a notebook wrote into notebooks/"
