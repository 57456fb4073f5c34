"""Named crash points, so fault-injection tests kill a run at an exact place, not a timed one.

With the environment variable ALIGN_JAX_CRASH_AT=<point>:<step> the process exits at once
(os._exit: no cleanup, no flushing, like kill -9) when it reaches that point:
  after_step:<s>   right after training step s, before anything of step s is saved
  during_save:<s>  while saving step s: orbax has written its temporary folder, not renamed it
  after_save:<s>   right after the checkpoint of step s is committed
Unset (always, outside tests) it changes nothing.
"""

import os

import orbax.checkpoint as ocp

ENV = "ALIGN_JAX_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for kill -9


def crash_at(point: str, step: int) -> None:
  if os.environ.get(ENV) == f"{point}:{step}":
    os._exit(EXIT_CODE)  # pylint: disable=protected-access


class _CrashBeforeRename(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """orbax's atomic rename with the 'during_save' crash point before the rename."""

  async def finalize(self):
    final = os.path.basename(os.path.normpath(str(self.get_final())))
    if final.isdigit():
      crash_at("during_save", int(final))
    await super().finalize()


def temporary_path_class():
  """The class orbax should use for its temporary folders (None: orbax's default)."""
  return _CrashBeforeRename if os.environ.get(ENV, "").startswith("during_save:") else None
