"""Progress bars (tqdm) that stay readable in batch-job logs.

On a terminal they refresh ten times a second; when stderr is a file or pipe
(Slurm, Kubernetes, CI) each step writes one readable line when it finishes
instead (what it did, how many, how long).
`set_progress(False)` turns every bar of the process off, those of code that
is not handed a `progress` flag (the data loaders) included: the CLI's
`--no-progress` does that.
"""

from __future__ import annotations

import sys
import time


def _tqdm():
  """tqdm's notebook widget where ipywidgets is installed, else its text bar:
  `tqdm.auto` without ipywidgets warns in every notebook's first cell."""
  try:
    import ipywidgets  # noqa: F401
    from tqdm.auto import tqdm
  except ImportError:
    from tqdm import tqdm
  return tqdm


_enabled = True


def set_progress(enabled: bool) -> None:
  """Shows (True) or hides (False) every progress bar of this process from now on."""
  global _enabled
  _enabled = bool(enabled)


def progress_enabled() -> bool:
  """Whether `set_progress` left progress output on."""
  return _enabled


def progress_bar(
  iterable=None, *, desc: str, total: int | None = None, enabled: bool = True, unit: str = "it", initial: int = 0
):
  """A tqdm bar on a terminal; elsewhere (a log file, a pipe) one line per
  step when it finishes, e.g. `proxy training: 69/69 steps in 2.1 s (epoch=3/3, loss=0.123)`,
  instead of bar frames a log cannot show."""
  interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
  if enabled and _enabled and not interactive:
    return _Summary(iterable, desc=desc, total=total, unit=unit, initial=initial)
  return _tqdm()(
    iterable,
    desc=desc,
    total=total,
    unit=unit,
    initial=initial,
    disable=not (enabled and _enabled),
    leave=True,  # a finished bar stays, showing what was done
    mininterval=0.1,
    dynamic_ncols=True,
  )


class _Summary:
  """The part of tqdm's interface the project uses, printing one line at the end."""

  def __init__(self, iterable, *, desc: str, total: int | None, unit: str, initial: int):
    self.iterable, self.desc, self.unit = iterable, desc, unit
    self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    self.n, self.initial, self.postfix, self.closed = initial, initial, "", False
    self.started = time.perf_counter()

  def __iter__(self):
    try:
      for item in self.iterable:
        yield item
        self.n += 1
    finally:
      self.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False

  def update(self, count: int = 1) -> None:
    self.n += count

  def set_postfix(self, refresh: bool = True, **values) -> None:
    self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

  def close(self) -> None:
    if self.closed:
      return
    self.closed = True
    done = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
    resumed = f", resumed at {self.initial}" if self.initial else ""
    extra = f" ({self.postfix})" if self.postfix else ""
    print(
      f"{self.desc}: {done} {self.unit}{'s' if self.unit != 'it' else ''} in"
      f" {time.perf_counter() - self.started:.1f} s{resumed}{extra}",
      file=sys.stderr,
      flush=True,
    )
