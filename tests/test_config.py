"""Pipeline YAML: defaults, strict keys with suggestions, value checks."""

from __future__ import annotations

import pytest

from pruning import UserError, load_config, parse_config


def test_quickstart_config_parses():
  config = load_config("pipelines/quickstart.yaml")
  assert config.dataset.spec == "digits" and config.proxy.seeds == (0, 1, 2, 3, 4)
  assert config.proxy_training.epochs == 3 and config.training.epochs == 30
  assert [s.name for s in config.selections] == ["el2n_hardest", "random"]


@pytest.mark.parametrize(
  "raw,message",
  [
    ({"name": "x", "modle": "mlp"}, "did you mean 'model'"),
    ({"name": "x", "training": {"epoch": 3}}, "did you mean 'epochs'"),
    ({"name": "x", "selections": [{"name": "a", "keep": 0.5, "stratgy": "random"}]}, "did you mean 'strategy'"),
    ({"name": "x", "selections": [{"name": "a", "keep": 2.5}]}, "--keep"),
    ({"name": "x", "selections": [{"name": "a", "keep": 0.5, "class_rule": "balance"}]}, "did you mean 'balanced'"),
    ({"name": "x", "proxy": {"seeds": 0}}, "at least 1"),
    ({"name": "x", "scores": ["el2n", "el2n"]}, "twice"),
    ({"name": "x", "model": "mlp", "model_options": {"hiden": [3]}}, "did you mean 'hidden'"),
    ({"model": "mlp"}, "no `name`"),
    ({"name": "../etc"}, "may use only"),
  ],
)
def test_bad_configs(raw, message):
  with pytest.raises(UserError, match=message):
    parse_config(raw)


def test_invalid_yaml(tmp_path):
  path = tmp_path / "bad.yaml"
  path.write_text("name: [unclosed\n")
  with pytest.raises(UserError, match="not valid YAML"):
    load_config(path)


def test_dataset_stream_is_a_boolean():
  assert parse_config({"name": "x", "dataset": {"spec": "digits", "stream": True}}).dataset.stream is True
  with pytest.raises(UserError, match="stream must be true or false"):
    parse_config({"name": "x", "dataset": {"spec": "digits", "stream": "yes"}})
