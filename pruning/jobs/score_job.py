"""A scoring job: a config's proxies trained and its scores written to one manifest file.

    result = score_job(config, "manifest.parquet")                       # one process, resumable
    result = score_job(config, "part-0.parquet", shard=(0, 4), proxies="proxies/")  # a Slurm array task
    result = score_job(config, "manifest.parquet", backend="ray", num_shards=8)

One entry, one backend interface (`ScoringBackend`, registered by name in
`BACKENDS`):

- `local`: trains the proxies with their checkpoints in `.OUT.partial/` beside
  the output, so the same call resumes a killed job, then streams the scores
  into the file a block of rows at a time;
- `shared` (chosen by `proxies=DIR`): the shards of one job share DIR; the
  first to take its lock trains and saves, the others wait and load;
- `distributed`: every process of a `jax.distributed` job scores its share
  into a part file; after a barrier process 0 merges the parts;
- `ray`: one Ray task trains, the shards are Ray tasks, the driver merges.

`pruning score` is a shell over `score_job`.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pruning.config import PipelineConfig
from pruning.data import load_dataset
from pruning.errors import UserError
from pruning.evaluation import describe_proxy_accuracy
from pruning.jobs.locking import LOCK_NAME, folder_lock, output_lock
from pruning.jobs.parts import merge_parts
from pruning.jobs.recorded import SAVED_TOKENIZER, check_fingerprint, saved_tokenizer
from pruning.manifest import Manifest
from pruning.registry import Registry
from pruning.runtime.atomic import check_writable, refuse_symlinks, write_text
from pruning.scores.run import score_proxies, train_proxies, write_scores
from pruning.training import TrainingCheckpointer, job_checkpointer


def _stderr(line: str) -> None:
  print(line, file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class ScoreJob:
  """One scoring job: what a backend needs to run it."""

  config: PipelineConfig
  out: Path | None
  shard: tuple[int, int] | None = None
  overwrite: bool = False
  fingerprint: str | None = None  # the data must have this fingerprint (a re-run of a manifest)
  fingerprint_source: str = "the recorded config"  # where the fingerprint came from, for the error
  tokenizer_json: str | None = None  # text: the recorded tokenizer to tokenise with (a re-run of a manifest)
  progress: bool = True
  log: Callable[[str], None] = _stderr


@dataclasses.dataclass(frozen=True)
class ScoreJobResult:
  """What a job wrote: `rows` examples into `out` (None: proxies trained only)."""

  out: Path | None
  rows: int
  parts: int = 1  # how many processes' or tasks' parts the manifest joins


class ScoringBackend(Protocol):
  """Runs a `ScoreJob` somewhere: one process, a shared proxy folder, a JAX job, a Ray cluster."""

  def run(self, job: ScoreJob) -> ScoreJobResult: ...


BACKENDS: Registry[Callable[..., ScoringBackend]] = Registry("scoring backend")


def score_job(
  config: PipelineConfig,
  out: str | Path | None,
  *,
  backend: str | ScoringBackend = "local",
  shard: tuple[int, int] | None = None,
  overwrite: bool = False,
  fingerprint: str | None = None,
  fingerprint_source: str = "the recorded config",
  tokenizer_json: str | None = None,
  progress: bool = True,
  log: Callable[[str], None] = _stderr,
  **backend_options,
) -> ScoreJobResult:
  """Scores `config`'s dataset into the manifest at `out`, on `backend` (a name
  in `BACKENDS` with its `backend_options`, or a `ScoringBackend`)."""
  if isinstance(backend, str):
    backend = BACKENDS.get(backend)(**backend_options)
  elif backend_options:
    raise UserError(f"options {sorted(backend_options)} go with a backend name, not a backend object")
  if out is not None:
    check_writable(out, overwrite=overwrite)
  job = ScoreJob(
    config=config,
    out=None if out is None else Path(out),
    shard=shard,
    overwrite=overwrite,
    fingerprint=fingerprint,
    fingerprint_source=fingerprint_source,
    tokenizer_json=tokenizer_json,
    progress=progress,
    log=log,
  )
  return backend.run(job)


def load_job_data(job: ScoreJob):
  dataset = load_dataset(**job.config.dataset.options(), tokenizer_json=job.tokenizer_json)
  check_fingerprint(dataset, job.fingerprint, source=job.fingerprint_source)
  features = dataset.features_line()
  if features:
    job.log(features)
  return dataset


def _write(job: ScoreJob, models, dataset) -> ScoreJobResult:
  """Streams the scores into the output, under the output folder's shared lock."""
  assert job.out is not None
  with output_lock(job.out):
    rows = write_scores(
      models,
      dataset,
      job.config.proxy_spec(),
      job.out,
      shard=job.shard,
      pipeline_config=job.config.to_dict(),
      overwrite=job.overwrite,
      progress=job.progress,
    )
  if models.extras.get("proxy_accuracy"):
    job.log(describe_proxy_accuracy(models.extras["proxy_accuracy"]))
  return ScoreJobResult(out=job.out, rows=rows)


@BACKENDS.register("local", description="one process; proxy checkpoints beside the output, so a rerun resumes")
@dataclasses.dataclass
class LocalBackend:
  def run(self, job: ScoreJob) -> ScoreJobResult:
    if job.out is None:
      raise UserError("a scoring job needs an output: give --out PATH, the manifest to write")
    # Proxy checkpoints live beside the output until it is written, so the same
    # command resumes a killed job; the folder's lock keeps a second job out.
    partial = resume_folder(job.out, job.shard)
    refuse_symlinks(partial.parent, partial.name, f"{partial.name}/proxy", f"{partial.name}/{SAVED_TOKENIZER}")
    if job.tokenizer_json is None:  # text: resume with the tokenizer the checkpoints were trained on
      job = dataclasses.replace(job, tokenizer_json=saved_tokenizer(partial))
    dataset = load_job_data(job)
    fresh = not partial.exists()
    with folder_lock(partial):
      if dataset.tokenizer_json is not None and not (partial / SAVED_TOKENIZER).exists():
        write_text(partial / SAVED_TOKENIZER, dataset.tokenizer_json, overwrite=False)
      checkpointer = job_checkpointer(partial / "proxy")
      if checkpointer.latest_epoch() is not None:
        job.log(f"resuming proxy training from epoch {checkpointer.latest_epoch()} ({partial}/)")
      try:
        models = train_proxies(dataset, job.config.proxy_spec(), checkpointer=checkpointer, progress=job.progress)
      except UserError:
        # Refused before anything was saved: leave no trace of the attempt.
        if fresh and checkpointer.latest_epoch() is None:
          remove_fresh_resume_folder(partial)
        raise
      result = _write(job, models, dataset)
      shutil.rmtree(partial, ignore_errors=True)
    return result


@BACKENDS.register("shared", description="shards of one job share a proxy folder: the first trains, the rest load")
@dataclasses.dataclass
class SharedProxiesBackend:
  proxies: str | Path
  train_only: bool = False

  def run(self, job: ScoreJob) -> ScoreJobResult:
    if not self.train_only and job.out is None:
      raise UserError("a scoring job needs --out PATH, the manifest to write (or --train-only with --proxies)")
    dataset = load_job_data(job)
    proxies = TrainingCheckpointer(self.proxies)
    with folder_lock(self.proxies, wait=True):
      if proxies.latest_epoch() is not None:
        job.log(f"using the proxies in {self.proxies}/ (trained to epoch {proxies.latest_epoch()})")
      models = train_proxies(dataset, job.config.proxy_spec(), checkpointer=proxies, progress=job.progress)
    if self.train_only:
      return ScoreJobResult(out=None, rows=0)
    return _write(job, models, dataset)


@BACKENDS.register("distributed", description="a jax.distributed job: each process scores a share, process 0 merges")
@dataclasses.dataclass
class DistributedBackend:
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None

  def run(self, job: ScoreJob) -> ScoreJobResult:
    from pruning.jobs import distributed

    if job.shard is not None:
      raise UserError("--distributed shards the rows and trains on every process itself: drop --shard")
    if job.out is None:
      raise UserError("a distributed scoring job needs --out PATH, the manifest process 0 writes")
    index, count = distributed.initialize(
      coordinator=self.coordinator, num_processes=self.num_processes, process_id=self.process_id
    )
    dataset = load_job_data(job)
    # Orbax saves a multi-process job's state collectively; a distributed job
    # does not checkpoint yet (its processes would have to agree on resuming).
    spec = job.config.proxy_spec()
    models = train_proxies(dataset, spec, progress=job.progress)
    part = score_proxies(
      models, dataset, spec, shard=(index, count), pipeline_config=job.config.to_dict(), progress=job.progress
    )
    path = distributed.part_path(job.out, index, count)
    part.to_parquet(path, overwrite=True)
    distributed.barrier("pruning: parts written")
    rows = len(part)
    if index == 0:
      paths = [distributed.part_path(job.out, i, count) for i in range(count)]
      manifest = merge_parts([Manifest.read_parquet(p) for p in paths], names=[str(p) for p in paths])
      manifest.to_parquet(job.out, overwrite=job.overwrite)
      for p in paths:
        p.unlink()
      rows = len(manifest)
    distributed.barrier("pruning: manifest written")
    return ScoreJobResult(out=job.out if index == 0 else None, rows=rows, parts=count)


@BACKENDS.register("ray", description="Ray tasks: one trains, the shards score with retries, the driver merges")
@dataclasses.dataclass
class RayBackend:
  address: str | None = None
  num_shards: int | None = None

  def run(self, job: ScoreJob) -> ScoreJobResult:
    from pruning.jobs.ray_backend import score_on_ray

    if job.shard is not None:
      raise UserError("--backend ray shards, trains and merges the job itself: drop --shard")
    if job.out is None:
      raise UserError("a Ray scoring job needs --out PATH, the manifest to write")
    # The workers load the data; the driver holds none.
    manifest = score_on_ray(
      job.config,
      address=self.address,
      num_shards=self.num_shards,
      fingerprint=job.fingerprint,
      tokenizer_json=job.tokenizer_json,
      progress=job.progress,
      log=job.log,
    )
    with output_lock(job.out):
      manifest.to_parquet(job.out, overwrite=job.overwrite)
    return ScoreJobResult(out=job.out, rows=len(manifest))


def resume_folder(out: Path, shard: tuple[int, int] | None) -> Path:
  """`.OUT.partial` (or `.OUT.partial-I-of-N` for a shard): a job's proxy checkpoints until it finishes."""
  return out.parent / (f".{out.name}.partial" + (f"-{shard[0]}-of-{shard[1]}" if shard else ""))


def remove_fresh_resume_folder(partial: Path) -> None:
  """Removes a resume folder this job made and saved nothing in."""
  for name in (LOCK_NAME, "proxy", SAVED_TOKENIZER):
    path = partial / name
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path, ignore_errors=True)
    elif path.is_file():
      path.unlink()
  try:
    partial.rmdir()
  except OSError:
    pass
