"""The package's import graph, read from the source (every import, those inside
functions too): no cycles between packages or between modules, no private
name imported from another package, and the data layer never importing the
layers it feeds. Cheap to check, so a cycle cannot come back unseen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "pruning"
# Data flows one way: these must not be imported by `pruning.data`.
ABOVE_DATA = ("models", "training", "scores", "manifest", "selection", "flagging", "retraining", "jobs", "cli")


def modules() -> dict[str, Path]:
  found = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    found[name] = path
  return found


def imports(path: Path) -> list[tuple[str, list[str]]]:
  """(module, names) of every `import` / `from ... import` of the package in a file."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pruning" and not node.level:
      found.append((node.module, [alias.name for alias in node.names]))
    elif isinstance(node, ast.Import):
      found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "pruning"]
  return found


def package(name: str) -> str:
  """`pruning.data` for `pruning.data.text`; a top-level module is its own package."""
  return ".".join(name.split(".")[:2])


def graph(level) -> dict[str, set[str]]:
  known = modules()
  edges: dict[str, set[str]] = {}
  for name, path in known.items():
    for module, names in imports(path):
      # `from pruning.data import text` names a module; `from pruning.data import load_dataset` the package.
      targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known] or [module]
      for target in targets:
        a, b = level(name), level(target)
        if a != b and not b.startswith(a + ".") and not a.startswith(b + "."):  # a package and its own modules
          edges.setdefault(a, set()).add(b)
  return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
  """Every cycle found by a depth-first search (each reported once, from its smallest member)."""
  found, seen = [], set()

  def visit(node, path):
    for following in sorted(edges.get(node, ())):
      if following == path[0]:
        cycle = tuple(path)
        if cycle not in seen and min(cycle) == cycle[0]:
          seen.add(cycle)
          found.append(list(cycle) + [following])
      elif following not in path and following > path[0]:
        visit(following, path + [following])

  for start in sorted(edges):
    visit(start, [start])
  return found


def test_no_import_cycles_between_packages():
  assert cycles(graph(package)) == []


def test_no_import_cycles_between_modules():
  assert cycles(graph(lambda name: name)) == []


def test_no_private_name_is_imported_from_another_package():
  wrong = []
  for name, path in modules().items():
    for module, names in imports(path):
      private = [n for n in names if n.startswith("_") and not n.startswith("__")]
      if private and package(module) != package(name):
        wrong.append(f"{name} imports {', '.join(private)} from {module}")
  assert wrong == []


def test_the_data_layer_imports_nothing_it_feeds():
  wrong = [
    f"{name} imports {module}"
    for name, path in modules().items()
    if package(name) == "pruning.data"
    for module, _ in imports(path)
    if package(module) in {f"pruning.{layer}" for layer in ABOVE_DATA}
  ]
  assert wrong == []


def test_the_checks_find_what_they_look_for():
  """The search itself, on a graph with a known cycle and one without."""
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
  assert cycles({"a": {"b"}, "b": {"c"}, "d": {"a"}}) == []


MAX_MODULE_LINES = 400


def test_every_module_stays_readable_at_one_sitting():
  """One concept per module: none grows past 400 lines (split it by concept instead)."""
  long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
  assert long == {}


def test_the_command_line_package_only_parses_and_prints():
  """`pruning/cli/__init__.py` parses and runs one command; the commands live in `pruning.cli.commands`."""
  path = modules()["pruning.cli"]
  assert not any(line.startswith("def cmd_") for line in path.read_text().splitlines())
