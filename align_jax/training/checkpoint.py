"""Orbax checkpoints that are never poisoned, and a restore that survives damaged ones.

`<workdir>/checkpoints/<step>/`: epoch-end checkpoints with their validation metrics (with
`evaluations_per_epoch` > 1 also those evenly spaced within an epoch; "epoch-end" below covers
them), the last `keep` plus the best by the task's metric ("best" and "latest" of the alignment
run mean these).
`<workdir>/checkpoints_mid_epoch/<step>/`: the newest mid-epoch checkpoint only, for resumption
after a pre-emption; it has no metrics, never becomes best and never pushes an epoch-end
checkpoint out. Saves are synchronous (an error surfaces at the step that caused it) and
atomic (orbax writes a temporary folder and renames it), and only finite states are saved.
`restore_newest` tries checkpoints newest first and moves any that cannot be restored, or hold
non-finite arrays, to `<workdir>/damaged_checkpoints/`, logging why.
"""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy as policies

from align_jax.errors import InputError

EPOCH_DIR = "checkpoints"
MID_EPOCH_DIR = "checkpoints_mid_epoch"
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(RuntimeError):
  """A checkpoint could not be written; the message says which and what is left intact."""


def has_checkpoints(workdir: str) -> bool:
  """Whether `workdir` holds any step folder (epoch-end or mid-epoch)."""
  return any(name.isdigit() for folder in (EPOCH_DIR, MID_EPOCH_DIR)
             if os.path.isdir(os.path.join(workdir, folder))
             for name in os.listdir(os.path.join(workdir, folder)))


def last_good(step: int | None) -> str:
  """Where a rerun will start: the newest checkpoint, or from scratch."""
  if step is None:
    return "no checkpoint was saved yet, so a rerun starts from scratch"
  return (f"a rerun resumes from the checkpoint of step {step}; with changed settings, add "
          "--config.allow_config_change=True")


def non_finite_leaves(tree) -> list[str]:
  """Paths of the floating-point arrays in `tree` that hold NaN or inf (host arrays)."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    value = np.asarray(leaf)
    if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
      bad.append(jax.tree_util.keystr(path))
  return bad


def reading_options(**options) -> ocp.CheckpointManagerOptions:
  """Options of a manager that only reads: it writes nothing and involves no other process (a
  multi-host manager otherwise waits for every process, which may never come: multihost.py)."""
  here = jax.process_index()
  return ocp.CheckpointManagerOptions(
      read_only=True, create=False, multiprocessing_options=ocp.options.MultiprocessingOptions(
          primary_host=here, active_processes={here}), **options)


def _manager(folder: str, policy, read_only: bool, **options) -> ocp.CheckpointManager:
  if read_only:
    return ocp.CheckpointManager(folder, options=reading_options(preservation_policy=policy,
                                                                 **options))
  return ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(
      preservation_policy=policy, enable_async_checkpointing=False, cleanup_tmp_directories=True,
      **options))


class Checkpointer:
  """Saves and restores host copies of a train state; every process calls it (orbax
  coordinates hosts). `read_only` opens existing checkpoints without creating anything."""

  def __init__(self, workdir: str, keep: int, metric: str, mode: str, read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.metric, self.mode = metric, mode
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=lambda m: m[metric], reverse=mode == "min", n=1),
    ])
    # best_fn/best_mode make orbax store each step's metrics and answer best_step().
    self.epochs = _manager(os.path.join(self.workdir, EPOCH_DIR), policy, read_only,
                           best_fn=lambda m: m[metric], best_mode=mode)
    self.mid_epoch = None if read_only else _manager(
        os.path.join(self.workdir, MID_EPOCH_DIR), policies.LatestN(n=1), read_only)

  def latest_step(self) -> int | None:
    """The newest epoch-end checkpoint."""
    return self.epochs.latest_step()

  def best_step(self) -> int | None:
    """The kept epoch-end step with the best selection metric (None when nothing is saved)."""
    return self.epochs.best_step()

  def metrics_by_step(self) -> dict[int, dict[str, float]]:
    """The validation metrics saved with each kept epoch-end checkpoint, by step."""
    return {step: dict(self.epochs.metrics(step) or {}) for step in self.epochs.all_steps()}

  def save(self, step: int, state, metrics: dict[str, float] | None) -> None:
    """Saves an epoch-end checkpoint (with validation `metrics`) or, with metrics None, the
    mid-epoch one. Refuses non-finite states; turns write failures into CheckpointError."""
    host = jax.device_get(state)
    bad = non_finite_leaves(host)
    if bad:
      raise FloatingPointError(
          f"The train state at step {step} holds NaN or inf in {len(bad)} arrays (e.g. "
          f"{', '.join(bad[:3])}); stopped without saving it ({last_good(self.newest_step())})."
          " Lower learning_rate or set grad_clip_norm, then rerun.")
    manager = self.epochs if metrics is not None else self.mid_epoch
    try:
      manager.save(step, args=ocp.args.StandardSave(host),
                   metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()})
      manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  (orbax and the OS raise many kinds)
      raise CheckpointError(
          f"Saving the checkpoint of step {step} in {manager.directory} failed ({type(e).__name__}"
          f": {e}). The run stopped; {last_good(self.newest_step())}, intact. Free disk space or "
          "fix the problem, then rerun.") from e
    if metrics is not None:  # an epoch end supersedes the mid-epoch checkpoint before it
      for old in self.mid_epoch.all_steps():
        if old <= step:
          self.mid_epoch.delete(old)

  def newest_step(self) -> int | None:
    steps = self._candidates()
    return steps[0][0] if steps else None

  def _candidates(self) -> list[tuple[int, ocp.CheckpointManager]]:
    """(step, manager) of every checkpoint, newest first (mid-epoch before epoch-end)."""
    found = [(s, self.epochs) for s in self.epochs.all_steps()]
    if self.mid_epoch is not None:
      found += [(s, self.mid_epoch) for s in self.mid_epoch.all_steps()]
    return sorted(found, key=lambda item: (item[0], item[1] is self.mid_epoch), reverse=True)

  def restore_newest(self, like):
    """(state, step) from the newest checkpoint that restores cleanly into the structure of
    the host state `like`, or (None, None) when there is none. Damaged checkpoints are moved
    aside with a warning; InputError when every checkpoint is damaged."""
    skipped = []
    for step, manager in self._candidates():
      try:
        state = manager.restore(step, args=ocp.args.StandardRestore(jax.device_get(like)))
        bad = non_finite_leaves(state)
        if bad:
          raise ValueError(f"it holds NaN or inf in {', '.join(bad[:3])}")
      except Exception as e:  # pylint: disable=broad-except  (any failure means: skip it)
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        logging.warning("Skipping checkpoint step %d in %s: %s", step, manager.directory, reason)
        skipped.append(f"step {step}: {reason}")
        self._move_aside(manager, step)
        continue
      return state, step
    if skipped:
      raise InputError(f"No checkpoint in {self.workdir} can be restored ({'; '.join(skipped)}). "
                       f"They were moved to {os.path.join(self.workdir, DAMAGED_DIR)}; rerun to "
                       "train from scratch, or use another --workdir.")
    return None, None

  def _move_aside(self, manager: ocp.CheckpointManager, step: int) -> None:
    """Moves a damaged step folder to damaged_checkpoints/ so orbax never sees it again."""
    if jax.process_index() == 0:
      source = os.path.join(str(manager.directory), str(step))
      target = os.path.join(self.workdir, DAMAGED_DIR,
                            f"{os.path.basename(str(manager.directory))}_{step}")
      os.makedirs(os.path.dirname(target), exist_ok=True)
      if os.path.exists(target):
        shutil.rmtree(target)
      if os.path.isdir(source):
        os.replace(source, target)
    manager.reload()

  def close(self) -> None:
    for manager in (self.epochs, self.mid_epoch):
      if manager is not None:
        manager.wait_until_finished()
        manager.close()
