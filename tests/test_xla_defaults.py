"""The project's XLA defaults never override a user's flags or an unmeasured jaxlib."""

from __future__ import annotations

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
