"""Multi-host runs: starting the processes' runtime, and keeping them in step.

Every process runs the same program. Training is data-parallel across all of them: each feeds
its rows of every global batch, and gradients and BatchNorm statistics are those of the whole
batch (runtime/parallel.py). Process 0 alone writes what is shared (config.json, run.json,
TensorBoard files, sample grids, reports); orbax checkpoints are written by every process
together.

Decisions that only process 0 can take (the workdir lock, the comparison with a saved config)
are shared with `agree`, so a refusal stops every process with a message instead of leaving the
others waiting in a collective. Work that only process 0 does (the alignment run, the study's
report) can outlast any collective's timeout, so the other processes wait for it through the
coordination service's key-value store (`finish`), not a collective, and all end together.

Under SLURM, JAX gives each process the GPU of its SLURM_LOCALID only; `slurm_device_ids` works
out which of the node's GPUs a process should use in both layouts (one task per node, one task
per GPU), and `check_devices` refuses to run on fewer devices than SLURM allocated.
"""

import os
import re

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from align_jax.errors import InputError

FINISHED_KEY = "align_jax/process_0_finished"
WAIT_LOG_SECONDS = 300  # how often a waiting process says it still waits
SHUTDOWN_TIMEOUT_ENV = "ALIGN_JAX_SHUTDOWN_TIMEOUT"  # seconds; JAX's default is 300


def _tasks_on_this_node(env) -> int:
  """SLURM's task count on this node (SLURM_NTASKS_PER_NODE, else the node's entry of
  SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE, e.g. '2(x3),1')."""
  if env.get("SLURM_NTASKS_PER_NODE"):
    return int(env["SLURM_NTASKS_PER_NODE"])
  text = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "1"
  per_node = []
  for count, repeat in re.findall(r"(\d+)(?:\(x(\d+)\))?", text):
    per_node += [int(count)] * int(repeat or 1)
  return per_node[min(int(env.get("SLURM_NODEID", 0)), len(per_node) - 1)]


def slurm_device_ids(env=os.environ) -> list[int] | None:
  """The GPUs (ordinals among those this process sees) a SLURM task should use: all of its
  share of the node, whether SLURM gave each task its own GPUs (--gpus-per-task: it sees just
  them) or every task sees the whole node (--gpus-per-node: the LOCALID-th share). None outside
  SLURM or where SLURM allocated no GPUs. InputError when the process sees fewer GPUs than its
  share, saying how to fix it."""
  if "SLURM_LOCALID" not in env:
    return None
  if env.get("SLURM_GPUS_ON_NODE"):
    node_gpus = int(env["SLURM_GPUS_ON_NODE"])
  elif env.get("SLURM_STEP_GPUS"):
    node_gpus = len(env["SLURM_STEP_GPUS"].split(","))
  else:
    return None
  tasks = _tasks_on_this_node(env)
  if node_gpus % tasks:
    raise InputError(f"SLURM gave this node {node_gpus} GPUs for {tasks} tasks, which does not "
                     "divide: request --gpus-per-node as a multiple of --ntasks-per-node.")
  share, local = node_gpus // tasks, int(env["SLURM_LOCALID"])
  visible = (len(env["CUDA_VISIBLE_DEVICES"].split(",")) if env.get("CUDA_VISIBLE_DEVICES")
             else node_gpus)
  if visible == share:
    return list(range(share))
  if visible >= node_gpus:
    return list(range(local * share, (local + 1) * share))
  raise InputError(
      f"This process sees {visible} GPU(s) (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')})"
      f" but SLURM gave its node {node_gpus} for {tasks} task(s), {share} each. Let every task "
      "see its share (srun --gpus-per-task, or no CUDA_VISIBLE_DEVICES of your own), or pass "
      "--local_device_ids=... to choose the devices yourself.")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: list[int] | None = None) -> None:
  """jax.distributed.initialize with gloo collectives for CPU devices (how processes of one
  machine, or CPU clusters, exchange gradients); unset arguments are auto-detected (SLURM, Open
  MPI, Cloud TPU), and under SLURM every GPU of the task's share is used (slurm_device_ids),
  not only the one JAX would pick. $ALIGN_JAX_SHUTDOWN_TIMEOUT sets JAX's shutdown timeout."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  expected = local_device_ids if local_device_ids is not None else slurm_device_ids()
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes,
      process_id=process_id, local_device_ids=expected,
      shutdown_timeout_seconds=int(os.environ.get(SHUTDOWN_TIMEOUT_ENV, 300)))
  if expected is not None and local_device_ids is None:
    check_devices(len(expected))


def check_devices(expected: int) -> None:
  """InputError unless this process has the `expected` local devices SLURM allocated to it."""
  if jax.local_device_count() < expected:
    raise InputError(
        f"This process has {jax.local_device_count()} local device(s) but SLURM allocated "
        f"{expected} to it: the others would sit idle. Check CUDA_VISIBLE_DEVICES and srun's "
        "--gpus-per-task, or pass --local_device_ids=... to use fewer on purpose.")


def describe_devices() -> str:
  """'P processes x L local devices = D devices (backend)', as every run logs it at start."""
  return (f"{jax.process_count()} process(es) x {jax.local_device_count()} local device(s) = "
          f"{jax.device_count()} device(s) ({jax.default_backend()})")


def finish(succeeded: bool = True) -> None:
  """Ends a multi-process run together: process 0 says it has finished its own work (say,
  the alignment) and whether it `succeeded`; every other process waits for that, however long
  it takes, through the coordination service's key-value store (no collective, so no
  collective timeout), logging every WAIT_LOG_SECONDS, and raises InputError if process 0
  failed; one that failed itself reports its own error instead. Then all of them reach JAX's
  shutdown at about the same time."""
  if jax.process_count() == 1 or not (succeeded or is_primary()):
    return
  from jax._src import distributed  # pylint: disable=g-import-not-at-top  (no public KV API)
  client = distributed.global_state.client
  if is_primary():
    client.key_value_set(FINISHED_KEY, "done" if succeeded else "failed")
    return
  waited = 0
  while True:
    try:
      outcome = client.blocking_key_value_get(FINISHED_KEY, WAIT_LOG_SECONDS * 1000)
      if outcome != "done":
        raise InputError("process 0 stopped the run; its log says why.")
      return
    except InputError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (jaxlib's error types are private)
      if "DEADLINE_EXCEEDED" not in str(e) and "timed out" not in str(e).lower():
        raise
    waited += WAIT_LOG_SECONDS
    logging.info("Process %d: waiting for process 0 to finish its own work (%d s so far).",
                 jax.process_index(), waited)


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
