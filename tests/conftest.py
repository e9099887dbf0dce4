"""Shared fixtures: small real data and a small scored manifest."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pruning
from pruning.runtime.xla import UNOPTIMISED
from pruning.training import TrainConfig

# The suite compiles with LLVM's optimisations off (`-O0` of XLA's CPU backend):
# compiling is most of the suite's time, and this flag leaves XLA's own passes
# (fusion, layouts, buffer assignment) as they are, so every program is the one
# users run up to its machine code. The README's test command took 15% less
# time. `PRUNING_TESTS_XLA=optimised` runs the suite as users' programs are
# compiled; CI runs the fast tier (every reference check) that way as well.
UNOPTIMISED_FLAG = " ".join(f"--{name}={value}" for name, value in UNOPTIMISED.items())
if os.environ.get("PRUNING_TESTS_XLA") != "optimised" and UNOPTIMISED_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {UNOPTIMISED_FLAG}".strip()
# Then the XLA settings the `pruning` command applies, so a manifest made in
# this process and one made by a `pruning` subprocess (which inherits both)
# agree bit for bit. XLA reads them when its backend starts: before any test runs.
pruning.apply_xla_defaults()

# Compile once per test session: JAX's persistent compilation cache in a
# folder this session creates and removes, shared with the `pruning`
# subprocesses through the environment. Many tests train the same small models
# (each `train_models` call builds its programs anew), and an executable read
# back from the cache computes what a fresh compilation does.
XLA_CACHE_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0, "jax_persistent_cache_min_entry_size_bytes": 0}
SHARED_CACHE = "PRUNING_TESTS_XLA_CACHE"  # set by the process that made the folder: pytest-xdist's workers share it


def pytest_configure(config):
  import jax

  folder = os.environ.get(SHARED_CACHE)
  if folder is None:  # this process (a plain run, or xdist's controller) makes the folder and removes it
    folder = tempfile.mkdtemp(prefix="pruning-tests-xla-cache-")
    config.xla_cache_folder = folder
    os.environ[SHARED_CACHE] = folder
  for name, value in {"jax_compilation_cache_dir": folder, **XLA_CACHE_SETTINGS}.items():
    os.environ[name.upper()] = str(value)  # what the `pruning` subprocesses read
    jax.config.update(name, value)


def pytest_unconfigure(config):
  folder = getattr(config, "xla_cache_folder", None)
  if folder:
    shutil.rmtree(folder, ignore_errors=True)
    os.environ.pop(SHARED_CACHE, None)


# Test files by their measured time, heaviest first (`--durations=0` of the README's command,
# 2026-12-05, compiled as above). With `--dist loadfile` a whole file goes to the next idle worker,
# so the heavy ones start first and the light ones fill in at the end, rather than one heavy file
# running alone last (xdist's own order, by number of tests, put the 12 study pipelines near the
# end). `--no-loadscope-reorder` in setup.cfg keeps this order.
HEAVIEST_FIRST = [
  "test_notebooks.py",
  "test_studies.py",
  "test_frozen.py",
  "test_transformer.py",
  "test_resume.py",
  "test_grand.py",
  "test_fuzz_readers.py",
  "test_pretrained.py",
  "test_influence.py",
  "test_ray_backend.py",
  "test_recorded_data.py",
  "test_sharding.py",
  "test_cli.py",
  "test_models.py",
  "test_extending.py",
  "test_hostile_input.py",
  "test_training.py",
  "test_shards.py",
  "test_text.py",
  "test_streaming.py",
  "test_micro_batches.py",
  "test_remedies.py",
  "test_csv.py",
]


def pytest_collection_modifyitems(config, items):
  rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


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


# How the `pruning` console script starts: a new process whose path does not hold the working folder.
CONSOLE_SCRIPT = (
  "import sys; sys.path = [p for p in sys.path if p not in ('', '.')]\nfrom pruning.cli import main; sys.exit(main())"
)


def pruning_process(*args, cwd=None, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
  """`pruning ARGS` started in the background as the console script starts;
  `env` adds variables to this process's environment."""
  return subprocess.Popen(
    [sys.executable, "-c", CONSOLE_SCRIPT, *map(str, args)],
    cwd=cwd,
    env={**os.environ, **(env or {})},
    stdout=stdout,
    stderr=stderr,
    text=True,
  )


@pytest.fixture
def run_cli(tmp_path):
  """`run_cli(*args, cwd=tmp_path, env=None)`: `pruning ARGS` run to its end in a
  new process started as the console script starts; returns (exit code, stdout, stderr)."""

  def run(*args, cwd=None, env=None, timeout=300) -> tuple[int, str, str]:
    process = pruning_process(*args, cwd=cwd or tmp_path, env=env)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err

  return run
