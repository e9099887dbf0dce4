"""The run folder of `pruning run`: what a run writes, resumes from and records.

A run folder holds `manifest.parquet`, `subsets/`, the results and plots, and
`run-record.json` (each output's SHA-256, which `pruning check` verifies).
While the run is unfinished, `.resume/` holds its config, training
checkpoints and finished retraining arms, so the same command resumes a
killed run; a finished run removes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pruning.config import PipelineConfig
from pruning.errors import UserError
from pruning.jobs.locking import LOCK_NAME
from pruning.jobs.recorded import SAVED_TOKENIZER
from pruning.runtime.atomic import file_digest, make_working_folder, refuse_symlinks, write_text
from pruning.runtime.atomic import remove_stale_temporaries as remove_dead_temporaries

RESUME_DIR = ".resume"
# The folders a run writes into: never followed when they are symlinks.
WORKING_FOLDERS = (f"{RESUME_DIR}/proxy", f"{RESUME_DIR}/arms", f"{RESUME_DIR}/config.json", "subsets")


RUN_RECORD = "run-record.json"


RUN_RECORD_FORMAT = "pruning.run/1"


# Everything `run_pipeline` may write at the top of a run folder (subsets/ holds the rest): the one list
# that run-record.json, --overwrite and `pruning check` read.
RUN_OUTPUTS = (
  "manifest.parquet",
  "report.json",
  "results.csv",
  "results.parquet",
  "summary.csv",
  "per_class.csv",
  "per_class.parquet",
  "noise_detection.csv",
  "noise_detection.parquet",
  "kept_per_class.png",
  "accuracy.png",
  "pruning_curves.png",
  "remedies.png",
  "timings.json",
  SAVED_TOKENIZER,  # text: what a resumed run and later commands tokenise with
  RUN_RECORD,
)
# Not covered by the record: the time a run took differs between runs, and the record cannot hold its own digest.
UNRECORDED_OUTPUTS = ("timings.json", RUN_RECORD)


def is_run_folder(folder: Path) -> bool:
  """Whether `folder` holds a run `run_pipeline` wrote (finished or not)."""
  return (
    (folder / RUN_RECORD).is_file()
    or (folder / RESUME_DIR / "config.json").is_file()
    or ((folder / "report.json").is_file() and (folder / "manifest.parquet").is_file())
  )


def clear_run_outputs(folder: Path) -> None:
  """Removes what an earlier run wrote in `folder` (its outputs, subsets and
  resume state), and nothing else."""
  for name in RUN_OUTPUTS:
    path = folder / name
    if path.is_file() and not path.is_symlink():
      path.unlink()
  subsets = folder / "subsets"
  if subsets.is_dir() and not subsets.is_symlink():
    for path in subsets.glob("*.parquet"):
      if path.is_file() and not path.is_symlink():
        path.unlink()
  resume = folder / RESUME_DIR
  if resume.is_dir() and not resume.is_symlink():
    shutil.rmtree(resume, ignore_errors=True)


def prepare_output(output_dir: Path, *, overwrite: bool, config: PipelineConfig) -> bool | str:
  """Readies the run folder; True when it holds an unfinished run of this config to resume.

  An unfinished run keeps its state in `.resume/` (the config, training
  checkpoints, finished retraining arms); a finished run removes it. With
  `overwrite`, the outputs of an earlier run are removed first (so no stale
  subset survives); a folder holding anything else is refused.
  """
  resuming = check_output(output_dir, overwrite=overwrite, config=config)
  if resuming:
    return resuming
  if overwrite:
    clear_run_outputs(output_dir)
  make_working_folder(output_dir, RESUME_DIR)
  recorded = output_dir / RESUME_DIR / "config.json"
  wanted = json.loads(json.dumps(config.to_dict(), default=str))
  # The config first: from here on a killed run is one to resume.
  write_text(recorded, json.dumps(wanted, sort_keys=True), overwrite=True)
  make_working_folder(output_dir, "subsets")
  return False


FINISHED = "finished"


def finished_run_of(output_dir: Path, wanted: dict) -> bool:
  """Whether `output_dir` holds a finished run of the config `wanted` (a job
  killed after it wrote everything, and run again, as Slurm requeues do)."""
  if not (output_dir / RUN_RECORD).is_file():
    return False
  try:
    return json.loads((output_dir / "report.json").read_text()).get("config") == wanted
  except (OSError, ValueError, UnicodeDecodeError, AttributeError):
    return False


def check_output(output_dir: Path, *, overwrite: bool, config: PipelineConfig) -> bool | str:
  """Refuses a run folder this run may not write into, changing nothing;
  True when it holds an unfinished run of this config to resume, `FINISHED`
  when it holds this config's finished run (nothing to do)."""
  if not output_dir.is_dir():
    return False
  refuse_symlinks(output_dir, *WORKING_FOLDERS)
  recorded = output_dir / RESUME_DIR / "config.json"
  wanted = json.loads(json.dumps(config.to_dict(), default=str))
  others = [p.name for p in output_dir.iterdir() if p.name != LOCK_NAME]
  if overwrite and others:
    if not is_run_folder(output_dir):
      raise UserError(
        f"{str(output_dir)!r} holds files that no pruning run wrote ({others[0]!r}, ...): --overwrite only"
        " replaces an earlier run; give --output a new folder"
      )
    return False
  if recorded.is_file():
    try:
      same = json.loads(recorded.read_text()) == wanted
    except (ValueError, UnicodeDecodeError):
      same = False
    if not same:
      raise UserError(
        f"run folder {str(output_dir)!r} holds an unfinished run of another config: pass --overwrite to"
        " replace it or --output to choose another folder"
      )
    return True
  if others and not overwrite and finished_run_of(output_dir, wanted):
    return FINISHED
  subsets = output_dir / "subsets"
  if set(others) <= {RESUME_DIR, "subsets"} and not (subsets.is_dir() and any(subsets.iterdir())):
    return False  # a run killed while it readied the folder: nothing of it to keep
  if others:
    raise UserError(
      f"run folder {str(output_dir)!r} already holds files: pass --overwrite to replace them"
      " or --output to choose another folder"
    )
  return False


def recorded_outputs(output_dir: Path) -> list[str]:
  """The outputs of `RUN_OUTPUTS` in `output_dir` that its run record covers."""
  return [name for name in RUN_OUTPUTS if name not in UNRECORDED_OUTPUTS and (output_dir / name).is_file()]


def write_run_record(output_dir: Path, subsets: list[str]) -> None:
  """`run-record.json`: the SHA-256 of every file the run wrote (each of
  `RUN_OUTPUTS` it holds, and the `subsets`' files), which `pruning check`
  verifies (an edited, truncated or deleted output shows). The folder held
  none of them before the run (a new folder, or one --overwrite cleared)."""
  names = [*recorded_outputs(output_dir), *(f"subsets/{name}.parquet" for name in subsets)]
  files = {name: file_digest(output_dir / name) for name in sorted(names)}
  write_text(
    output_dir / RUN_RECORD,
    json.dumps({"format": RUN_RECORD_FORMAT, "files": files}, indent=1, sort_keys=True) + "\n",
    overwrite=True,
  )


def remove_stale_temporaries(folder: Path) -> None:
  """Temporary files a killed run left behind (never under a final name)."""
  remove_dead_temporaries(folder)
  remove_dead_temporaries(folder / "subsets")


def discard_unstarted_run(output_dir: Path, *, created: bool) -> None:
  """After a refusal: removes the resume state of a run that saved no work
  yet (only its config), so the corrected config is not refused as
  "another config"; and the folder itself when this run created it and it
  is empty again. A refused run leaves nothing."""
  resume = output_dir / RESUME_DIR
  if resume.is_dir() and not resume.is_symlink():
    saved = [p for p in resume.rglob("*") if not p.is_dir() and p.name not in ("config.json", LOCK_NAME)]
    if not saved:
      shutil.rmtree(resume, ignore_errors=True)
  subsets = output_dir / "subsets"
  if subsets.is_dir() and not subsets.is_symlink() and not any(subsets.iterdir()):
    subsets.rmdir()
  if created and output_dir.is_dir() and {p.name for p in output_dir.iterdir()} <= {LOCK_NAME}:
    shutil.rmtree(output_dir, ignore_errors=True)
