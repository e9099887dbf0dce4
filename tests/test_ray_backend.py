"""The Ray backend on a local Ray instance started by the test: the same
manifest as one process, retries after a worker dies, the job's errors
surfaced as they are."""

from __future__ import annotations

import os

import pytest

import pruning
from pruning.config import parse_config

ray = pytest.importorskip("ray")
# Starting a local Ray takes seconds: the whole module is in the full suite, not the fast tier.
pytestmark = pytest.mark.slow

CONFIG = {
  "name": "ray-test",
  "dataset": {"spec": "digits", "validation": 0.1},
  "model": "mlp",
  "training": {"epochs": 2, "batch_size": 128},
  "proxy": {"seeds": [0, 1]},
  "scores": ["el2n", "grand", "forgetting", "vog", "el2n@1"],
}


@pytest.fixture(scope="module")
def local_ray():
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
  yield
  ray.shutdown()


@pytest.fixture(scope="module")
def config():
  return parse_config(CONFIG, source="the test")


@pytest.fixture(scope="module")
def single_process(config):
  return pruning.score_dataset(
    pruning.load_dataset(**config.dataset.options()),
    config.proxy_spec(),
    pipeline_config=config.to_dict(),
    progress=False,
  )


@pytest.mark.slow
def test_ray_gives_the_single_process_manifest(local_ray, config, single_process, tmp_path):
  from pruning.jobs.ray_backend import score_on_ray

  manifest = score_on_ray(config, num_shards=3, progress=False, log=lambda _: None)
  assert manifest.table.equals(single_process.table)
  assert {k: v for k, v in manifest.provenance.items() if k != "created_at"} == {
    k: v for k, v in single_process.provenance.items() if k != "created_at"
  }


def test_a_shard_whose_worker_dies_is_rerun(local_ray, config, single_process, tmp_path):
  from pruning.jobs.ray_backend import score_on_ray, score_task

  marker = str(tmp_path / "died-once")

  def dies_once(config_dict, fingerprint, models, index, count):
    if index == 1 and not os.path.exists(marker):
      open(marker, "w").close()
      os._exit(1)  # the worker process dies, as on a lost node
    return score_task(config_dict, fingerprint, models, index, count)

  manifest = score_on_ray(config, num_shards=2, progress=False, log=lambda _: None, shard_task=dies_once)
  assert os.path.exists(marker)
  assert manifest.table.equals(single_process.table)


def test_the_jobs_own_errors_are_not_retried_but_raised(local_ray, config):
  from pruning.jobs.ray_backend import score_on_ray

  with pytest.raises(pruning.UserError, match="dataset changed since"):
    score_on_ray(config, num_shards=2, fingerprint="0" * 64, progress=False, log=lambda _: None)
  with pytest.raises(pruning.UserError, match="--num-shards"):
    score_on_ray(config, num_shards=0, progress=False, log=lambda _: None)


@pytest.mark.slow
def test_cli_ray_backend_writes_the_manifest(local_ray, tmp_path, capsys):
  from pruning.cli import main

  args = ["score", "--data", "digits", "--epochs", "1", "--seeds", "1", "--score", "el2n", "--no-progress"]
  assert main([*args, "--backend", "ray", "--num-shards", "2", "--out", str(tmp_path / "ray.parquet")]) == 0
  assert main([*args, "--out", str(tmp_path / "plain.parquet")]) == 0
  ray_table = pruning.Manifest.read_parquet(tmp_path / "ray.parquet").table
  assert ray_table.equals(pruning.Manifest.read_parquet(tmp_path / "plain.parquet").table)
  assert main([*args, "--backend", "ray", "--shard", "0/2", "--out", str(tmp_path / "x.parquet")]) == 2
  assert "drop --shard" in capsys.readouterr().err
