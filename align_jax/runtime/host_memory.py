"""Host memory: let glibc keep the memory a step frees, so that the next step reuses it.

XLA:CPU allocates each execution's temporary buffers as one large block on a worker thread and
frees it when the step ends. glibc serves blocks that large with mmap (always above 64 MiB on a
worker thread's arena, above 32 MiB on any) and gives them back with munmap, so every step
would fault all its temporary memory back in, page by page. `retain_freed_memory` has glibc
serve every block from one heap that it never trims, so steps reuse the memory; resident memory
then stays at its peak. The page-fault counts and the speed this buys are measured in
docs/performance.md. Whether it applies is the backend policy's call (CPUs only:
runtime/backend.py). The entry points call it before JAX starts its runtime (unless
--noretain_freed_memory); library users call it first thing, or start Python with
MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 (1 TiB: in effect
never).
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
