"""Starting and ending an entry point's run: host memory, the persistent compilation cache,
the multi-process runtime and the device line every run logs, in that order (glibc's settings
must come before JAX's threads, the cache before the first compilation)."""

import os

from absl import logging

import align_jax
from align_jax.runtime import backend

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"  # JAX's own variable wins over the default


def default_compilation_cache() -> str:
  """Where compiled programs are kept across runs: $JAX_COMPILATION_CACHE_DIR, else
  <align_jax's per-user cache>/jax_compilation_cache."""
  return os.environ.get(CACHE_ENV) or os.path.join(align_jax.user_cache_dir(),
                                                   "jax_compilation_cache")


def start(*, retain_freed_memory: bool, compilation_cache_dir: str, distributed: bool,
          coordinator_address=None, num_processes=None, process_id=None,
          local_device_ids=None) -> None:
  """Prepares this process for a run and logs `P processes x L local devices = D devices`."""
  if backend.retains_host_memory(retain_freed_memory):
    from align_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
    host_memory.retain_freed_memory()
  import jax  # pylint: disable=g-import-not-at-top  (after the host-memory settings)
  from align_jax.runtime import multihost  # pylint: disable=g-import-not-at-top
  if compilation_cache_dir:  # a restarted or resumed run does not compile its steps again
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(compilation_cache_dir))
  if distributed:
    multihost.initialize(coordinator_address, num_processes, process_id, local_device_ids)
  logging.info("Devices: %s.", multihost.describe_devices())
