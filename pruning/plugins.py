"""Plugins: the user's own module, imported so that what it registers
(`pruning.register_model`, `register_score`, `register_source`, ...) is known
to the `pruning` command and to pipeline configs.

    pruning run config.yaml --plugin mymodels        # a module on the Python path or in the working folder
    pruning score --plugin ./lib/mymodels.py ...     # or a .py file
    plugins: [mymodels]                              # in a pipeline YAML

A config that names plugins records them, and whatever re-reads the config
from a manifest (`--from-manifest`, `flag`, `check`) needs them loaded. It
never imports them itself, though: a manifest is a file anyone may hand over,
and importing is running code. It names the `--plugin` flags to give instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from pruning.errors import UserError

_LOADED: dict[str, object] = {}


class PluginNeeded(UserError):
  """A recorded config names a plugin this process has not loaded."""


def is_file_plugin(name: str) -> bool:
  return name.endswith(".py") or "/" in name or "\\" in name


def load_plugin(name: str):
  """Imports plugin `name` (a module name or a `.py` file) once; returns the module."""
  if not isinstance(name, str) or not name.strip():
    raise UserError(f"plugin {name!r} must name a module (mymodels) or a .py file (./mymodels.py)")
  if name in _LOADED:
    return _LOADED[name]
  try:
    if is_file_plugin(name):
      module = _import_file(Path(name))
    else:
      module = _import_module(name)
  except UserError:
    raise
  except ModuleNotFoundError as error:
    if error.name and name.split(".")[0] != error.name.split(".")[0]:
      raise UserError(f"plugin {name!r} imports {error.name!r}, which is not installed: install it") from None
    raise UserError(
      f"no plugin module {name!r} on the Python path or in the working folder: give its module name or its .py file"
    ) from None
  except Exception as error:  # the plugin's own code failed: one line, its message
    raise UserError(f"plugin {name!r} failed to import ({type(error).__name__}: {str(error)[:200]}): fix it") from None
  _LOADED[name] = module
  return module


def load_plugins(names) -> None:
  for name in names or ():
    load_plugin(name)


def check_loaded(names, *, source: str) -> None:
  """Refuses a recorded config whose plugins this process has not loaded, naming the flags to give."""
  missing = [n for n in names or () if n not in _LOADED]
  if missing:
    flags = " ".join(f"--plugin {n}" for n in missing)
    raise PluginNeeded(
      f"{source} was made with plugin{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}, which"
      f" {'are' if len(missing) > 1 else 'is'} imported only when you name {'them' if len(missing) > 1 else 'it'}:"
      f" give {flags}"
    )


def _import_module(name: str):
  # `python -m` puts the working folder on the path; the `pruning` script does not.
  here = str(Path.cwd())
  added = here not in sys.path
  if added:
    sys.path.insert(0, here)
  try:
    return importlib.import_module(name)
  finally:
    if added and here in sys.path:
      sys.path.remove(here)


def _import_file(path: Path):
  if not path.is_file() or path.suffix != ".py":
    raise UserError(f"plugin file {str(path)!r} is not a .py file: give the path of the module's source")
  module_name = f"pruning_plugin_{path.stem}"
  spec = importlib.util.spec_from_file_location(module_name, path)
  if spec is None or spec.loader is None:
    raise UserError(f"plugin file {str(path)!r} cannot be imported: give a Python source file")
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    sys.modules.pop(module_name, None)
    raise
  return module
