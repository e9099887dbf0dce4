"""Ray backend: one training task, then the shards as Ray tasks with retries.

`pruning score --backend ray` runs the job on a Ray cluster (an existing one
with `--ray-address`, else a local Ray started for the job):

1. one task trains the proxies on the whole training split (as `--proxies`
   does for a Slurm array, the models are trained once);
2. the trained models go to Ray's object store once, and N shard tasks score
   rows [floor(i N_rows / N), floor((i + 1) N_rows / N)) each, reading the
   models from the store (zero-copy on the same node);
3. the driver merges the parts with `pruning.jobs.parts.merge_parts`, which
   checks they come from one job and cover every row once.

Tasks that die with their worker (a killed process, a lost node) are rerun up
to `max_retries` times; an error in the job itself (bad data, say) is not
retried but raised at once. Workers load the dataset themselves from its
spec, so the driver holds no data, and the path must be readable from every
node (shared storage) with `pruning` installed there. The manifest equals the
one a single process writes.

Ray is an optional extra: `pip install 'pruning[ray]'`.
"""

from __future__ import annotations

import functools
import json

from pruning.config import PipelineConfig, parse_config
from pruning.errors import UserError
from pruning.manifest import Manifest
from pruning.runtime.progress import progress_bar
from pruning.scores.run import score_proxies, train_proxies

MAX_RETRIES = 3


def _import_ray():
  try:
    import ray
  except ImportError:
    raise UserError("--backend ray needs Ray: pip install 'pruning[ray]' (or pip install ray)") from None
  return ray


@functools.lru_cache(maxsize=4)
def _dataset(options_json: str):
  """A worker loads each dataset once and keeps it for its later tasks."""
  from pruning.data import load_dataset

  return load_dataset(**json.loads(options_json))


def _load(config_dict: dict, data: dict | None):
  """The config and its dataset; `data` holds the `fingerprint` the data must
  have and, for text, the `tokenizer_json` to tokenise with (the one the
  training task used: every worker gets the same token ids)."""
  from pruning.jobs.recorded import check_fingerprint

  data = data or {}
  config = parse_config(config_dict, source="the Ray driver")
  options = {**config.dataset.options(), "tokenizer_json": data.get("tokenizer_json")}
  dataset = _dataset(json.dumps(options, sort_keys=True))
  check_fingerprint(dataset, data.get("fingerprint"), source="this Ray job")
  return config, dataset


def warm_up_task(config_dict: dict, data: dict | None) -> int:
  """Imports JAX and loads the data in an idle worker while the proxies train,
  so the shard tasks that land there start at once."""
  _, dataset = _load(config_dict, data)
  return len(dataset.train)


def train_task(config_dict: dict, data: dict | None):
  """Trains the config's proxies; returns them, the number of training rows and
  the data the shards must score (fingerprint and, for text, the tokenizer)."""
  config, dataset = _load(config_dict, data)
  trained = {"fingerprint": dataset.fingerprint, "tokenizer_json": dataset.tokenizer_json}
  return train_proxies(dataset, config.proxy_spec(), progress=False), len(dataset.train), trained


def score_task(config_dict: dict, data: dict | None, models, index: int, count: int) -> Manifest:
  """Shard `index` of `count`, scored with the trained proxies on the training task's data."""
  config, dataset = _load(config_dict, data)
  return score_proxies(
    models, dataset, config.proxy_spec(), shard=(index, count), pipeline_config=config.to_dict(), progress=False
  )


def score_on_ray(
  config: PipelineConfig,
  *,
  address: str | None = None,
  num_shards: int | None = None,
  fingerprint: str | None = None,
  tokenizer_json: str | None = None,
  max_retries: int = MAX_RETRIES,
  progress: bool = True,
  log=print,
  shard_task=score_task,
) -> Manifest:
  """The config's manifest, trained and scored as Ray tasks (see the module docstring).

  Args:
    address: the Ray cluster to join (`auto`, `ray://HOST:10001`, ...); None
      joins a running `ray.init()` of this process, or starts a local Ray.
    num_shards: scoring tasks; default one per CPU in the cluster.
    fingerprint: the dataset fingerprint the workers' data must have.
    tokenizer_json: text data: the tokenizer to tokenise with (a re-run of a
      manifest); otherwise the training task's, which every shard then uses.
    max_retries: reruns of a task whose worker died.
    shard_task: the function a shard task runs (tests inject failures here).
  """
  ray = _import_ray()
  if num_shards is not None and (isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1):
    raise UserError(f"--num-shards {num_shards!r} must be a whole number >= 1")
  started_here = not ray.is_initialized()
  if started_here:
    try:
      ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
      raise UserError(
        f"could not reach the Ray cluster at {address!r} ({str(error).splitlines()[0][:200]}):"
        " check --ray-address, or leave it out to start a local Ray"
      ) from None
  try:
    config_dict = config.to_dict()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    shards = num_shards or cpus
    train = ray.remote(max_retries=max_retries, retry_exceptions=False)(train_task)
    score = ray.remote(max_retries=max_retries, retry_exceptions=False)(shard_task)
    log(f"Ray: training {len(config.proxy.seeds)} proxies in one task, then scoring in {shards} tasks")
    given = {"fingerprint": fingerprint, "tokenizer_json": tokenizer_json}
    training = train.remote(config_dict, given)
    # The other workers get ready while the proxies train.
    warm_up = ray.remote(max_retries=0)(warm_up_task)
    _warming = [warm_up.remote(config_dict, given) for _ in range(max(0, min(shards, cpus) - 1))]
    try:
      models, num_rows, trained = ray.get(training)
    except ray.exceptions.RayTaskError as error:
      raise _task_error(error, "training") from None
    shards = min(shards, num_rows)
    models_ref = ray.put(models)
    del models
    pending = {score.remote(config_dict, trained, models_ref, i, shards): i for i in range(shards)}
    parts: dict[int, Manifest] = {}
    bar = progress_bar(total=shards, desc="Ray shards", unit="shard", enabled=progress)
    while pending:
      done, _ = ray.wait(list(pending), num_returns=1)
      index = pending.pop(done[0])
      try:
        parts[index] = ray.get(done[0])
      except ray.exceptions.RayTaskError as error:
        raise _task_error(error, f"shard {index}/{shards}") from None
      bar.update(1)
    bar.close()
  finally:
    if started_here:
      ray.shutdown()
  from pruning.jobs.parts import merge_parts

  ordered = [parts[i] for i in range(shards)]
  return merge_parts(ordered, names=[f"Ray shard {i}/{shards}" for i in range(shards)])


def _task_error(error, what: str) -> Exception:
  """The job's own error (e.g. a UserError from bad data) rather than Ray's wrapper."""
  cause = getattr(error, "cause", None)
  if isinstance(cause, UserError):
    return cause
  return UserError(f"the Ray task for {what} failed: {str(cause or error).splitlines()[-1][:300]}")
