"""The backend policy (runtime/backend.py): each choice on a CPU and, by patching the backend,
on accelerators."""

import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest

from align_jax.errors import InputError
import align_jax.rsa as rsa
from align_jax.runtime import backend


@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_layers_and_rsa_follow_the_platform(platform, monkeypatch):
  monkeypatch.setattr(backend, "platform", lambda: platform)
  on_cpu = platform == "cpu"
  assert backend.rewrites_layers("auto") == on_cpu
  assert backend.rewrites_layers("rewritten") and not backend.rewrites_layers("xla")
  assert backend.rsa_on_host() == on_cpu
  with pytest.raises(InputError, match="layer_impl must be one of"):
    backend.rewrites_layers("fast")


def test_the_rsa_engine_takes_the_device_path_off_the_cpu(monkeypatch):
  """Where the backend is not a CPU the RDM is the jitted one (same values)."""
  x = np.random.default_rng(0).standard_normal((40, 24))
  host = np.asarray(rsa.rdm(x, "correlation"))
  monkeypatch.setattr(backend, "platform", lambda: "gpu")
  device = rsa.rdm(x, "correlation")
  assert not isinstance(device, np.ndarray) and type(device).__module__.startswith("jax")
  np.testing.assert_allclose(np.asarray(device), host, atol=2e-6)


@pytest.mark.parametrize("setting,expected", [("cpu", "cpu"), ("cuda", "gpu"), ("rocm", "gpu"),
                                              ("tpu", "tpu"), ("cuda,cpu", "gpu")])
def test_the_expected_platform_reads_jax_platforms(setting, expected, monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", setting)
  assert backend.expected_platform() == expected
  assert backend.retains_host_memory() == (expected == "cpu")
  assert not backend.retains_host_memory(requested=False)


def test_an_installed_gpu_plugin_means_a_gpu(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  assert backend.expected_platform() == "cpu"  # this machine: no plugin, no libtpu
  plugin = importlib.metadata.EntryPoint("xla_cuda12", "jax_cuda12_plugin", "jax_plugins")
  monkeypatch.setattr(backend.importlib.metadata, "entry_points",
                      lambda group: [plugin] if group == "jax_plugins" else [])
  assert backend.expected_platform() == "gpu" and not backend.retains_host_memory()


def test_the_host_memory_decision_does_not_start_jax():
  """glibc's settings must come before JAX's threads: deciding them must not import JAX."""
  code = ("import sys; from align_jax.runtime import backend; backend.retains_host_memory(); "
          "assert 'jax' not in sys.modules, 'imported jax'")
  subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("platform,expected", [("cpu", None), ("gpu", "highest"),
                                               ("tpu", "highest")])
def test_feature_extraction_asks_for_full_float32_on_accelerators(platform, expected,
                                                                   monkeypatch):
  monkeypatch.setattr(backend, "platform", lambda: platform)
  assert backend.feature_precision() == expected


def test_the_compilation_cache_is_kept_per_user_unless_told_otherwise(monkeypatch, tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from align_jax.runtime import session  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv(session.CACHE_ENV, raising=False)
  monkeypatch.setenv("ALIGN_JAX_CACHE_DIR", str(tmp_path / "user"))
  assert session.default_compilation_cache() == str(tmp_path / "user" / "jax_compilation_cache")
  monkeypatch.setenv(session.CACHE_ENV, str(tmp_path / "jax"))
  assert session.default_compilation_cache() == str(tmp_path / "jax")  # JAX's own variable wins
  before = jax.config.jax_compilation_cache_dir
  try:
    session.start(retain_freed_memory=False, compilation_cache_dir=str(tmp_path / "c"),
                  distributed=False)
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
