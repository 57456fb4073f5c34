"""Initialise a model from a weights file: an orbax checkpoint or an .npz keyed by path.

.npz keys are '/'-joined parameter paths with the collection first, e.g.
'params/Conv_0/kernel' or 'batch_stats/BatchNorm_0/mean'. An orbax source may be a training
workdir (its latest checkpoint), its checkpoints/ folder, or one step folder.
"""

import os

import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from align_jax.errors import InputError
from align_jax.training import checkpoint


def _orbax_variables(path: str) -> dict:
  folder = os.path.join(path, "checkpoints") if os.path.isdir(
      os.path.join(path, "checkpoints")) else path
  step_folder = os.path.basename(os.path.normpath(folder))
  if step_folder.isdigit():
    folder, step = os.path.dirname(os.path.normpath(folder)), int(step_folder)
  else:
    step = None
  manager = ocp.CheckpointManager(os.path.abspath(folder),
                                  options=checkpoint.reading_options())
  step = manager.latest_step() if step is None else step
  if step is None:
    raise InputError(f"No orbax checkpoint found under {path}.")
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  if restored.get("average"):  # a training state's weight average stands for its model
    restored = restored["average"]
  return {k: restored[k] for k in ("params", "batch_stats") if k in restored and restored[k]}


def load_variables(path: str) -> dict:
  """{'params': ..., optionally 'batch_stats': ...} from an .npz file or an orbax checkpoint."""
  path = os.path.expanduser(path)
  if path.endswith(".npz"):
    if not os.path.isfile(path):
      raise InputError(f"Weights file {path} does not exist.")
    with np.load(path, allow_pickle=False) as arrays:
      return traverse_util.unflatten_dict({tuple(k.split("/")): arrays[k] for k in arrays.files})
  if not os.path.isdir(path):
    raise InputError(f"init_from={path!r} is neither an .npz file nor a checkpoint directory.")
  return _orbax_variables(path)


def merge_variables(initial: dict, loaded: dict) -> dict:
  """`initial` with every array replaced by `loaded`'s; keys and shapes must match exactly."""
  want = traverse_util.flatten_dict(initial, sep="/")
  have = traverse_util.flatten_dict(loaded, sep="/")
  missing = sorted(set(want) - set(have))
  unexpected = sorted(set(have) - set(want))
  wrong = [f"{k}: model {want[k].shape}, file {np.shape(have[k])}" for k in sorted(want)
           if k in have and tuple(want[k].shape) != tuple(np.shape(have[k]))]
  if missing or unexpected or wrong:
    details = [("missing in the file", missing), ("not in the model", unexpected),
               ("shape mismatch", wrong)]
    raise InputError("The weights do not fit the model:\n" + "\n".join(
        f"  {label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
        for label, keys in details if keys))
  return traverse_util.unflatten_dict(
      {k: np.asarray(have[k], dtype=want[k].dtype) for k in want}, sep="/")
