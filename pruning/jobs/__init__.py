"""Jobs: the shells that run the library end to end, resumably and in parallel.

- `run`: `run_pipeline`, a whole config into a run folder (`pruning run`);
- `run_folder`: what a run folder holds, how a killed run resumes;
- `score_job`: `score_job`, one manifest from a config on a `ScoringBackend`
  (local, shared proxies, jax.distributed, Ray; `pruning score`);
- `parts`: the row blocks (shards) of a scoring job and their merge;
- `locking`: folder locks that keep two jobs out of one output;
- `check`: `check_path`, every problem of a manifest or run folder (`pruning check`).
"""

from pruning.jobs.check import check_path
from pruning.jobs.locking import LOCK_NAME, folder_lock, output_lock
from pruning.jobs.parts import merge_parts, parse_shard
from pruning.jobs.recorded import check_fingerprint, config_from_manifest
from pruning.jobs.run import RunResult, format_summary, run_pipeline
from pruning.jobs.run_folder import RUN_RECORD, RUN_RECORD_FORMAT, file_digest
from pruning.jobs.score_job import BACKENDS, ScoreJob, ScoreJobResult, ScoringBackend, score_job

__all__ = [
  "BACKENDS",
  "LOCK_NAME",
  "RUN_RECORD",
  "RUN_RECORD_FORMAT",
  "RunResult",
  "ScoreJob",
  "ScoreJobResult",
  "ScoringBackend",
  "check_fingerprint",
  "check_path",
  "config_from_manifest",
  "file_digest",
  "folder_lock",
  "format_summary",
  "merge_parts",
  "output_lock",
  "parse_shard",
  "run_pipeline",
  "score_job",
]
