"""Shared fixtures: small real data and a small scored manifest."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest

import pruning
from pruning.training import TrainConfig

# The suite runs under the XLA settings the `pruning` command applies, so a
# manifest made in this process and one made by a `pruning` subprocess agree
# bit for bit. XLA reads them when its backend starts: before any test runs.
pruning.apply_xla_defaults()


@pytest.fixture(autouse=True)
def own_cache_folder(tmp_path_factory, monkeypatch):
  """Tokenised text and spill files go to a folder each test owns, never the home folder."""
  monkeypatch.setenv("PRUNING_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def digits():
  return pruning.load_dataset("digits")


@pytest.fixture(scope="session")
def linear_manifest(digits):
  """Two linear proxies, one epoch, every built-in score."""
  return pruning.score_dataset(
    digits,
    model="linear",
    training=TrainConfig(epochs=1, batch_size=64),
    seeds=[0, 1],
    scores=["el2n", "loss", "confidence", "margin", "entropy", "el2n@0"],
    progress=False,
  )


def write_npz(path, **arrays):
  with open(path, "wb") as handle:
    np.savez(handle, **arrays)
  return path


def small_images(n=60, num_classes=3, shape=(6, 6, 1), seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % num_classes
  x = (rng.normal(size=(n, *shape)) + y.reshape((-1,) + (1,) * len(shape))).astype(np.float32)
  return x, y


@contextlib.contextmanager
def lock_held_elsewhere(folder):
  """A real second job: another process holding `folder`'s run lock until
  the block ends (then it is killed, as a crashed job would be)."""
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      (
        "import time; from pruning.jobs.locking import folder_lock\n"
        f"with folder_lock({str(folder)!r}):\n  print('held', flush=True); time.sleep(60)"
      ),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    yield holder
  finally:
    holder.kill()
    holder.wait()
