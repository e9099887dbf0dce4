"""The one exception type that reaches users as a one-line message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
  """A problem with the user's input.

  The message is one line that names the problem and the fix. The CLI prints it
  and exits with status 2 instead of showing a traceback.
  """


def unknown_name_error(kind: str, name: str, valid: Iterable[str]) -> UserError:
  """A `UserError` for an unknown name, suggesting the nearest valid one."""
  valid = sorted(valid)
  close = difflib.get_close_matches(name, valid, n=1)
  hint = f"did you mean {close[0]!r}? " if close else ""
  return UserError(f"unknown {kind} {name!r}: {hint}valid: {', '.join(valid)}")
