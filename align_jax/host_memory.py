"""Host memory: let glibc keep the memory a step frees, so that the next step reuses it.

XLA:CPU allocates each execution's temporary buffers as one block (the VAE's train step at
batch 128: 92 MB; PhilNet's: 430 MB; ResNet-50 with the CIFAR stem: 6.7 GB) on a worker thread
and frees it when the step ends. glibc serves blocks that large with mmap (always above 64 MiB
on a worker thread's arena, above 32 MiB on any) and gives them back with munmap, so every step
faults all its temporary memory back in, page by page: 22,000 page faults per VAE step, 126,000
per PhilNet step, 1.6 million per CIFAR-stem ResNet-50 step (~4 us each, zeroing included, on
the 2-core machine). `retain_freed_memory` has glibc serve every block from one heap that it never
trims: steps reuse the memory (README, "Training speed": PhilNet +9% train, +17% inference
images/s; the CIFAR-stem ResNet-50 11.2 -> 16.5 train images/s against trimming beyond 2 GiB,
which returned its 6.7 GB block every step). Resident memory stays at its peak; train_bench's
peak (every model, PyTorch and both layer policies in one process) is in the README. Every entry
point calls it before JAX starts its runtime (unless --noretain_freed_memory); library users
call it first thing, or start Python with MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=1099511627776 (1 TiB: in effect never).
"""

import ctypes

# mallopt(3) parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_NEVER = -1  # mallopt takes an int; glibc reads the threshold as size_t: -1 is its maximum
SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER))


def retain_freed_memory() -> bool:
  """One malloc arena, no mmap-served blocks, no trimming: freed memory stays in the process
  for the next allocation. Call it before anything starts JAX's runtime (threads
  that allocated earlier keep their own arenas). Returns whether glibc took every setting;
  elsewhere (macOS, musl, Windows) nothing changes and it returns False."""
  try:
    libc = ctypes.CDLL(None)  # the process's own symbols (Windows has no such handle)
  except (OSError, TypeError):
    return False
  if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
    return False
  return all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
