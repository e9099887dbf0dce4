"""The README's Quick start is exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
  readme = (ROOT / "README.md").read_text()
  section = readme.split("## Quick start", 1)[1]
  block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
  return [line for line in block.splitlines() if line.strip()]


def test_quick_start_has_two_commands_and_ci_runs_them():
  commands = quick_start_commands()
  assert len(commands) == 2
  assert "pruning run pipelines/quickstart.yaml" in commands[0]
  assert "pytest" in commands[1]
  ci = (ROOT / ".ci" / "run").read_text().splitlines()
  for command in commands:
    assert command in ci, f"CI does not run {command!r}"
