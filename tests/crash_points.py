"""Named crash points, so fault-injection tests kill a run at an exact place, not a timed one.

`python -m tests.crash_points MODULE ARGS...` runs entry point MODULE (e.g.
experiments.train_philnet) as `python -m MODULE ARGS...` would. With the environment variable
ALIGN_JAX_CRASH_AT=<point>:<step> the process exits at once (os._exit: no cleanup, no flushing,
like kill -9) when it reaches that point:
  after_step:<s>   right after training step s, before anything of step s is saved
  during_save:<s>  while saving step s: orbax has written its temporary folder, not renamed it
  after_save:<s>   right after the checkpoint of step s is committed
The points are installed here, around the library's own functions (the train step,
Checkpointer.save, orbax's temporary folder), so the library carries no crash code.
"""

import os
import runpy
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from align_jax.training import checkpoint, steps

ENV = "ALIGN_JAX_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for kill -9


def _crash() -> None:
  os._exit(EXIT_CODE)  # pylint: disable=protected-access


class _CrashBeforeRename(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """orbax's atomic rename, with the process ending before the rename of step `CRASH_STEP`."""
  crash_step = -1

  async def finalize(self):
    final = os.path.basename(os.path.normpath(str(self.get_final())))
    if final == str(self.crash_step):
      _crash()
    await super().finalize()


def install(point: str, step: int) -> None:
  """Makes this process end at `point` of step `step` (see module)."""
  if point == "after_step":
    make_steps = steps.parallel_steps

    def parallel_steps(*args, **kwargs):
      train, evaluate = make_steps(*args, **kwargs)

      def train_then_crash(*step_args):
        state, update = train(*step_args)
        if int(np.asarray(jax.device_get(state.step)).reshape(-1)[0]) == step:
          _crash()
        return state, update
      return train_then_crash, evaluate
    steps.parallel_steps = parallel_steps
  elif point == "after_save":
    save = checkpoint.Checkpointer.save

    def save_then_crash(self, saved_step, *args, **kwargs):
      save(self, saved_step, *args, **kwargs)
      if saved_step == step:
        _crash()
    checkpoint.Checkpointer.save = save_then_crash
  elif point == "during_save":
    _CrashBeforeRename.crash_step = step
    manager = checkpoint._manager  # pylint: disable=protected-access

    def crashing_manager(folder, policy, read_only, **options):
      if not read_only:
        options["temporary_path_class"] = _CrashBeforeRename
      return manager(folder, policy, read_only, **options)
    checkpoint._manager = crashing_manager  # pylint: disable=protected-access
  else:
    raise ValueError(f"{ENV}={point}:{step}: unknown crash point {point!r}")


def main() -> None:
  module, args = sys.argv[1], sys.argv[2:]
  if os.environ.get(ENV):
    point, step = os.environ[ENV].split(":")
    install(point, int(step))
  sys.argv = [module, *args]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
