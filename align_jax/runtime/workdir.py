"""Output directories that two jobs never share and that fail early with a clear message.

`lock(path)` takes an exclusive OS file lock (fcntl.flock on `path/.lock`) for as long as the
with-block runs. The kernel releases it when the process ends in any way, kill -9 included, so
a crashed run never leaves a stale lock. A second process gets `InputError: <path> is in use by
pid N`. The lock is reentrant within a process (run_study's stages run training and alignment
in its own output directory). Under multi-host training all processes share one workdir:
process 0 locks it, and the others stop too when it cannot (multihost.agree).
"""

import contextlib
import errno
import fcntl
import os

from align_jax.errors import InputError
from align_jax.runtime import multihost

LOCK_FILE = ".lock"
_held: dict[str, list] = {}  # real path -> [open lock file, depth]


def prepare(path: str) -> str:
  """Creates `path` (and parents) and checks it is a writable directory; returns its absolute
  path, or raises InputError saying what is in the way."""
  path = os.path.abspath(os.path.expanduser(path))
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise InputError(f"Cannot use {path}: {parent} is a file, not a directory. Choose another "
                     "--workdir.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise InputError(f"Cannot create {path}: {e.strerror}. Choose a --workdir you can "
                     "write to.") from e
  if not os.access(path, os.W_OK | os.X_OK):
    raise InputError(f"{path} is not writable by this user. Choose a --workdir you can write "
                     "to, or fix its permissions.")
  return path


def _acquire(real: str):
  """The open, exclusively locked `real/.lock` file, or InputError naming its holder."""
  prepare(real)
  handle = open(os.path.join(real, LOCK_FILE), "a+")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    handle.seek(0)
    owner = handle.read().strip() or "unknown"
    handle.close()
    if e.errno in (errno.EAGAIN, errno.EACCES):
      raise InputError(f"{real} is in use by pid {owner}: another align_jax run writes there. "
                       "Wait for it to finish, or use another --workdir.") from e
    raise
  handle.seek(0)
  handle.truncate()
  handle.write(f"{os.getpid()}\n")
  handle.flush()
  return handle


@contextlib.contextmanager
def lock(path: str, all_processes: bool = True):
  """Holds the exclusive lock of output directory `path` (created if missing) in the block.
  Under multi-host, process 0 holds it; with `all_processes` every process calls this and
  learns whether process 0 could (multihost.agree), otherwise only process 0 calls it (work
  that is process 0's alone)."""
  real = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
  if real in _held:  # the same process again (on every process alike)
    _held[real][1] += 1
    try:
      yield
    finally:
      _held[real][1] -= 1
    return
  handle = multihost.agree(lambda: _acquire(real)) if all_processes else _acquire(real)
  _held[real] = [handle, 1]
  try:
    yield
  finally:
    _held.pop(real)
    if handle is not None:
      handle.close()  # releases the lock
