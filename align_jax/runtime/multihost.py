"""Multi-host runs: starting the processes' runtime, and keeping them in step.

Every process runs the same program. Training is data-parallel across all of them: each feeds
its slice of every global batch, and gradients and BatchNorm statistics are averaged over every
device of every process (training/steps.py). Process 0 alone writes what is shared (config.json,
run.json, TensorBoard files, sample grids, reports); orbax checkpoints are written by every
process together.

Decisions that only process 0 can take (the workdir lock, the comparison with a saved config)
are shared with `agree`, so a refusal stops every process with a message instead of leaving the
others waiting in a collective. Collectives between CPU processes go through gloo, whose peers
must meet within 30 s: work that only process 0 does (the alignment run, the study's report)
therefore never makes the other processes wait: they exit at once, cleanly.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils

from align_jax.errors import InputError


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """jax.distributed.initialize with gloo collectives for CPU devices (how processes of one
  machine, or CPU clusters, exchange gradients); unset arguments are auto-detected (SLURM, Open
  MPI, Cloud TPU)."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def is_primary() -> bool:
  return jax.process_index() == 0


def agree(check):
  """Runs check() on process 0 and tells every process whether it passed: check()'s result on
  process 0 (None elsewhere), or InputError on every process (process 0's own message there)."""
  if jax.process_count() == 1:
    return check()
  result, error = None, None
  if is_primary():
    try:
      result = check()
    except InputError as e:
      error = e
  passed = multihost_utils.broadcast_one_to_all(np.int32(error is None))
  if not int(passed):
    raise error or InputError("process 0 stopped the run; its log says why.")
  return result
