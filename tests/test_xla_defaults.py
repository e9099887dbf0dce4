"""The project's XLA defaults never override a user's flags or an unmeasured jaxlib."""

from __future__ import annotations

import os

from pruning.runtime import xla as xla_defaults


def test_defaults_respect_the_user(monkeypatch):
  monkeypatch.setattr(xla_defaults, "_jaxlib_minor", lambda: (0, 10))
  monkeypatch.delenv("PRUNING_KEEP_XLA_FLAGS", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert xla_defaults.apply_xla_defaults()
  import os

  assert os.environ["XLA_FLAGS"] == (
    "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
  )
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=all")
  assert not xla_defaults.apply_xla_defaults()
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=all"
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setenv("PRUNING_KEEP_XLA_FLAGS", "1")
  assert not xla_defaults.apply_xla_defaults() and os.environ["XLA_FLAGS"] == ""
  monkeypatch.delenv("PRUNING_KEEP_XLA_FLAGS")
  monkeypatch.setattr(xla_defaults, "_jaxlib_minor", lambda: (0, 99))
  assert not xla_defaults.apply_xla_defaults()


def test_xla_flags_with_ynn_replaces_the_setting():
  flags = "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type="
  assert xla_defaults.xla_flags_with_ynn("on", flags) == "--xla_force_host_platform_device_count=8"
  assert xla_defaults.xla_flags_with_ynn("dot", "").endswith("=LIBRARY_FUSION_TYPE_DOT")


def test_transformers_get_no_ynn_fusions_and_the_command_reads_the_model_first(monkeypatch, tmp_path):
  from pruning.cli import _model_to_train, build_parser
  from pruning.runtime import xla as xla_defaults

  monkeypatch.delenv("PRUNING_KEEP_XLA_FLAGS", raising=False)
  for model, setting in (("transformer", "off"), ("bert", "off"), ("mlp", "dot"), (None, "dot")):
    monkeypatch.setenv("XLA_FLAGS", "")
    if xla_defaults._jaxlib_minor() in xla_defaults.MEASURED_JAXLIB:
      assert xla_defaults.apply_xla_defaults(model)
      assert os.environ["XLA_FLAGS"] == xla_defaults.YNN_SETTINGS[setting]
  config = tmp_path / "c.yaml"
  config.write_text("name: t\nmodel: transformer\n")
  assert _model_to_train(build_parser().parse_args(["run", str(config)])) == "transformer"
  assert _model_to_train(build_parser().parse_args(["run", str(config), "--model", "mlp"])) == "mlp"
  assert _model_to_train(build_parser().parse_args(["run", str(tmp_path / "missing.yaml")])) is None
  assert _model_to_train(build_parser().parse_args(["score", "--model", "bert"])) == "bert"
