"""host_memory.retain_freed_memory: XLA:CPU's temporary buffers are reused, not faulted in anew."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK_PAGES = 8192 * 4096 * 4 / 4096  # XLA's temporary buffer below: a @ b, [8192, 4096]
# A fresh process (the settings must precede JAX's runtime) runs a program whose temporary
# buffer is one 134 MB block, and prints the page faults per run (mean of 20) after 10 warm-up
# runs (the heap finds its layout in the first few).
PROBE = """
import resource, sys
if sys.argv[1] == "retain":
  from align_jax.runtime import host_memory
  assert host_memory.retain_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda a, b, c: (a @ b) @ c)
a, b, c = jnp.ones((8192, 64)), jnp.ones((64, 4096)), jnp.ones((4096, 8))
for _ in range(10):
  f(a, b, c).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
  f(a, b, c).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_run(mode: str) -> float:
  result = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
  return float(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) only")
def test_retained_memory_is_reused_without_page_faults():
  default = _faults_per_run("default")
  retained = _faults_per_run("retain")
  # glibc's defaults: the block is mapped afresh every run, so each of its pages faults in
  assert default > 0.9 * BLOCK_PAGES, default
  # retained: reused (measured: a fresh block in 0-2 runs of 10, as the heap settles)
  assert retained < 0.5 * BLOCK_PAGES, retained


# A block beyond 2 GiB (the CIFAR-stem ResNet-50's step frees 6.7 GB at once), allocated, written
# and freed twice in a fresh process: the second time its pages fault in again unless glibc
# kept it (trimming it as free memory at the heap's top would return it to the system).
BIG_BLOCK = """
import ctypes, resource
from align_jax.runtime import host_memory
assert host_memory.retain_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 2**31 + 2**27
for _ in range(2):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(size)
  ctypes.memset(block, 1, size)
  libc.free(block)
  print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, size // 4096)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) only")
def test_blocks_beyond_2_gib_are_kept_too():
  result = subprocess.run([sys.executable, "-c", BIG_BLOCK], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
  (first, pages), (second, _) = [map(int, line.split()) for line in result.stdout.splitlines()]
  assert first > 0.9 * pages, (first, pages)  # the probe does measure page faults
  assert second < 0.01 * pages, (second, pages)


def test_without_glibc_nothing_changes(monkeypatch):
  """macOS and musl have no glibc malloc, Windows no process handle: a no-op, not an error."""
  import ctypes  # pylint: disable=g-import-not-at-top

  from align_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top

  class NotGlibc:
    def mallopt(self, *args):
      raise AssertionError("mallopt called outside glibc")

  monkeypatch.setattr(ctypes, "CDLL", lambda name: NotGlibc())
  assert host_memory.retain_freed_memory() is False

  def no_handle(name):
    raise TypeError("no handle for None")

  monkeypatch.setattr(ctypes, "CDLL", no_handle)
  assert host_memory.retain_freed_memory() is False
