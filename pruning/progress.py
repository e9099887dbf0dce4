"""Progress bars (tqdm) that stay readable in batch-job logs.

On a terminal they refresh ten times a second; when stderr is a file or pipe
(Slurm, Kubernetes, CI) they write a line at most every 30 seconds.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(iterable=None, *, desc: str, total: int | None = None, enabled: bool = True,
                 unit: str = "it", initial: int = 0):
  interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
  return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=not enabled, leave=False,
              mininterval=0.1 if interactive else 30.0, dynamic_ncols=True)
