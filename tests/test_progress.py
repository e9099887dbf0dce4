"""`--no-progress` hides every bar, the data loaders' included."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

import pruning
from pruning.cli import main


def test_no_progress_hides_the_loaders_bars(tmp_path, capsys):
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({f"f{i}": rng.normal(size=40).astype(np.float32) for i in range(4)})
  frame["label"] = np.arange(40) % 2
  data = tmp_path / "d.parquet"
  frame.to_parquet(data)
  argv = ["score", "--data", f"parquet:{data}", "--stream", "--model", "linear", "--epochs", "1", "--seeds", "1"]
  assert main([*argv, "--out", str(tmp_path / "shown.parquet")]) == 0
  assert "reading d.parquet" in capsys.readouterr().err  # the streamed loader shows its bar ...
  assert main([*argv, "--out", str(tmp_path / "hidden.parquet"), "--no-progress"]) == 0
  err = capsys.readouterr().err
  assert "reading" not in err and "training" not in err  # ... until told not to
  assert main([*argv, "--out", str(tmp_path / "again.parquet")]) == 0
  assert "reading d.parquet" in capsys.readouterr().err  # the switch is per command


def test_off_a_terminal_each_step_prints_one_finished_line(tmp_path, capsys):
  """A log file gets `proxy training: 46/46 steps in 0.4 s (epoch=2/2, loss=...)`, not a `0%` bar that never
  finishes."""
  assert (
    main(
      [
        "score",
        "--data",
        "digits",
        "--model",
        "linear",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--out",
        str(tmp_path / "m.parquet"),
      ]
    )
    == 0
  )
  err = capsys.readouterr().err
  assert "%|" not in err and "\r" not in err
  training = [line for line in err.splitlines() if re.match(r"proxy training: (\d+)/\1 steps in ", line)]
  assert len(training) == 1 and "epoch=2/2, loss=" in training[0], err


def test_on_a_terminal_the_bar_counts_steps_and_stays_when_done(digits, monkeypatch):
  """A one-epoch training's bar counts its steps (it does not sit at 0% until the epoch
  ends) and the finished bar stays on screen."""
  import io
  import sys

  from pruning.training import TrainConfig, train_models

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  screen = Terminal()
  monkeypatch.setattr(sys, "stderr", screen)
  train_models(
    pruning.TrainData(x=digits.train.x, y=digits.train.y, num_classes=10),
    pruning.ModelSpec(model="linear", seeds=[0], training=TrainConfig(epochs=1, batch_size=64)),
    progress=True,
    desc="bar test",
  )
  frames = [f for f in screen.getvalue().split("\r") if f.startswith("bar test") and "|" in f]
  steps = -(-len(digits.train) // 64)
  assert all(f"/{steps} " in f for f in frames)  # counted in steps, not in (one) epoch
  assert frames and f"{steps}/{steps}" in frames[-1] and screen.getvalue().endswith("\n")
