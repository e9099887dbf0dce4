"""The `pruning` command: parses arguments, runs one command, prints.

Every command maps a `UserError` to one line on stderr and exit status 2. The
arguments live in `pruning.cli.arguments`, the commands in
`pruning.cli.commands`; everything a command does is a public function a
Python user can call too.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from pruning.cli.arguments import build_parser
from pruning.cli.commands import COMMANDS
from pruning.errors import UserError
from pruning.manifest import creation_time
from pruning.plugins import load_plugins
from pruning.runtime.progress import set_progress
from pruning.runtime.xla import apply_xla_defaults

__all__ = ["COMMANDS", "build_parser", "main"]


def _model_to_train(args) -> str | None:
  """The model a command will train, read before any JAX computation (for the XLA flags)."""
  if getattr(args, "model", None):
    return args.model
  if getattr(args, "command", None) == "run" and getattr(args, "config", None):
    try:
      from pruning.runtime.safe_yaml import load_yaml

      path = Path(args.config)
      if path.stat().st_size > 1 << 20:
        return None
      values = load_yaml(path.read_text(encoding="utf-8"), source=str(path))
      model = values.get("model") if isinstance(values, dict) else None
      return model if isinstance(model, str) else None
    except Exception:  # a missing or bad config is reported by the command itself, in one line
      return None
  return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  return f"pruning: warning: {message}\n"


def main(argv=None) -> int:
  warnings.formatwarning = _one_line_warning  # a warning is one line, as an error is
  try:
    args = build_parser().parse_args(argv)
  except SystemExit as done:  # --help, or a one-line usage error
    return done.code if isinstance(done.code, int) else 2
  apply_xla_defaults(_model_to_train(args))  # before the first JAX computation starts XLA's CPU backend
  set_progress(not getattr(args, "no_progress", False))
  if args.command == "score" and args.score is None:
    args.score = ["el2n"]
  try:
    creation_time()  # a bad SOURCE_DATE_EPOCH is refused before any work, not when the manifest is written
    load_plugins(args.plugin)
    return COMMANDS[args.command](args)
  except UserError as error:
    print(f"pruning: error: {error}", file=sys.stderr)
    return 2
  except MemoryError:
    print("pruning: error: out of memory: use less data, fewer seeds or a smaller model", file=sys.stderr)
    return 2
  except BrokenPipeError:  # `pruning list | head`: the reader left; not an error of ours
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141
  except OSError as error:
    # What the checks before each write did not foresee (a full disk, a folder
    # removed mid-run): still one line; atomic writes left nothing half-written.
    where = f" {error.filename!r}" if error.filename else ""
    print(
      f"pruning: error: cannot read or write{where} ({error.strerror or error}): check the path, its"
      " permissions and free space",
      file=sys.stderr,
    )
    return 2
  except KeyboardInterrupt:
    print("pruning: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
