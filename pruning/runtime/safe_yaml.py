"""YAML for configs and options: `yaml.safe_load` without aliases or repeated keys."""

from __future__ import annotations

from pruning.errors import UserError


def load_yaml(text: str, *, source: str):
  """`yaml.safe_load` without aliases or repeated keys; a `UserError` on bad YAML."""
  import yaml

  class Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
      if self.check_event(yaml.AliasEvent):
        event = self.peek_event()
        raise UserError(
          f"{source}: YAML aliases (*{event.anchor}) are not allowed at line"
          f" {event.start_mark.line + 1}: write the value out"
        )
      return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
      seen = set()
      for key_node, _ in node.value:
        key = self.construct_object(key_node, deep=True)
        try:
          repeated = key in seen
          seen.add(key)
        except TypeError:
          raise UserError(
            f"{source}: a mapping key at line {key_node.start_mark.line + 1} is not a plain value: use names as keys"
          ) from None
        if repeated:
          raise UserError(
            f"{source}: key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1}): keep one"
          )
      return super().construct_mapping(node, deep=deep)

  try:
    raw = yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
  except yaml.YAMLError as error:
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    raise UserError(f"{source} is not valid YAML{where}: fix the syntax") from None
  except RecursionError:
    raise UserError(f"{source}: the YAML nests too deeply: flatten it") from None
  return raw if raw is not None else {}
