"""JAX's multi-process mode: two local processes joined by jax.distributed write
the manifest a single process writes, byte for byte."""

from __future__ import annotations

import os
import socket

import pytest
from conftest import pruning_process

from pruning.cli import main

ARGS = [
  "score",
  "--data",
  "digits",
  "--model",
  "mlp",
  "--epochs",
  "2",
  "--seeds",
  "2",
  "--score",
  "el2n",
  "--score",
  "aum",
  "--score",
  "grand",
  "--no-progress",
]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_the_single_process_manifest(tmp_path, monkeypatch):
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
  assert main([*ARGS, "--out", str(tmp_path / "single.parquet")]) == 0
  port = free_port()
  env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
  coordinates = ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
  processes = [
    pruning_process(*ARGS, "--out", tmp_path / "multi.parquet", *coordinates, "--process-id", i, env=env)
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=600) for p in processes]
  for process, (_out, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-2000:]
  assert "from 2 processes" in outputs[0][0]
  assert (tmp_path / "multi.parquet").read_bytes() == (tmp_path / "single.parquet").read_bytes()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["multi.parquet", "single.parquet"]


def test_partial_coordinates_are_refused(tmp_path, capsys):
  code = main([*ARGS, "--out", str(tmp_path / "m.parquet"), "--distributed", "--num-processes", "2"])
  assert code == 2 and "go together" in capsys.readouterr().err
