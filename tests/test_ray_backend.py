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

  def dies_once(config_dict, data, models, index, count):
    if index == 1 and not os.path.exists(marker):
      open(marker, "w").close()
      os._exit(1)  # the worker process dies, as on a lost node
    return score_task(config_dict, data, models, index, count)

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


def test_text_shards_tokenise_with_the_training_tasks_tokenizer(local_ray, tmp_path):
  """Each worker loads the data itself: the shards take the tokenizer the training task used
  (here the one a recorded manifest gives, which a fresh training would not reproduce)."""
  import numpy as np
  import pandas as pd

  from pruning.jobs.ray_backend import score_on_ray

  words = ["good", "bad", "film", "plot", "actor", "great", "awful", "scene"]
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({"text": [" ".join(rng.choice(words, 5)) for _ in range(48)], "label": np.arange(48) % 2})
  frame.to_csv(tmp_path / "s.csv", index=False)
  recorded = pruning.load_dataset(f"csv:{tmp_path / 's.csv'}", tokenizer="bpe", vocab_size=40, max_length=8)
  config = parse_config(
    {
      "name": "ray-text",
      "dataset": {"spec": f"csv:{tmp_path / 's.csv'}", "tokenizer": "bpe", "vocab_size": 300, "max_length": 8},
      "model": "transformer",
      "model_options": {"hidden": 16, "mlp": 16, "layers": 1},
      "training": {"epochs": 1, "batch_size": 16},
      "proxy": {"seeds": [0]},
      "scores": ["el2n"],
    },
    source="the test",
  )
  manifest = score_on_ray(
    config, num_shards=2, tokenizer_json=recorded.tokenizer_json, progress=False, log=lambda _: None
  )
  assert manifest.provenance["tokenizer_json"] == recorded.tokenizer_json
  assert manifest.fingerprint == recorded.fingerprint
