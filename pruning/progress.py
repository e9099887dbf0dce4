"""Progress bars (tqdm) that stay readable in batch-job logs.

On a terminal they refresh ten times a second; when stderr is a file or pipe
(Slurm, Kubernetes, CI) they write a line at most every 30 seconds.
`set_progress(False)` turns every bar of the process off, those of code that
is not handed a `progress` flag (the data loaders) included: the CLI's
`--no-progress` does that.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

_enabled = True


def set_progress(enabled: bool) -> None:
  """Shows (True) or hides (False) every progress bar of this process from now on."""
  global _enabled
  _enabled = bool(enabled)


def progress_enabled() -> bool:
  """Whether `set_progress` left progress output on."""
  return _enabled


def progress_bar(iterable=None, *, desc: str, total: int | None = None, enabled: bool = True,
                 unit: str = "it", initial: int = 0):
  interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
  return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=not (enabled and _enabled),
              leave=False,
              mininterval=0.1 if interactive else 30.0, dynamic_ncols=True)
