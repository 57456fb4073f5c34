"""The bridge from trained workdirs to arrays: restore a checkpoint, run the model over images
in jitted batches, and return named features as [n_images, dims] float32 numpy arrays.

Spatial layers ([n, h, w, c]) are global-average pooled by default, or, with
`reduction="projection"`, flattened and hashed by a seeded signed random projection
(feature hashing: each input unit adds +-x to one of `max_dims` outputs, which preserves inner
products in expectation) so no layer needs gigabytes: ResNet's first stage with the CIFAR
stem has 262,144 values per image.
"""

import contextlib
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from align_jax.data import input_pipeline
from align_jax.errors import InputError
from align_jax.models import create_model
from align_jax.runtime import backend
from align_jax.runtime.progress import Progress
from align_jax.training import checkpoint, pretrained, tasks

REDUCTIONS = ("mean", "projection")


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A model rebuilt from a workdir's config.json, with the variables of one checkpoint."""
  workdir: str
  config: ml_collections.ConfigDict
  model: object
  variables: dict
  step: int
  preprocessing: input_pipeline.Preprocessing


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config.json a training run wrote into `workdir`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise InputError(f"{workdir} has no config.json: not a training workdir of align_jax.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _checkpointer(workdir: str) -> checkpoint.Checkpointer:
  """A read-only view of `workdir`'s epoch-end checkpoints (InputError when there are none)."""
  config = read_config(workdir)
  task = tasks.TASKS[config.task](**config.task_kwargs)
  if not os.path.isdir(os.path.join(workdir, checkpoint.EPOCH_DIR)):
    raise InputError(f"{workdir} holds no checkpoint yet; train the model first.")
  return checkpoint.Checkpointer(workdir, config.keep_checkpoints, task.selection_metric,
                                 task.selection_mode, read_only=True)


def epoch_metrics(workdir: str) -> dict[int, dict[str, float]]:
  """Validation metrics of every kept epoch-end checkpoint of `workdir`, by step."""
  ckpt = _checkpointer(workdir)
  found = ckpt.metrics_by_step()
  ckpt.close()
  return found


def checkpoint_step(workdir: str, which: str = "best") -> int:
  """The step of the `which` epoch-end checkpoint: 'best' by the task's validation metric,
  'latest' (the newest epoch end; mid-epoch checkpoints are for resuming training only), or a
  kept epoch-end step given as its number."""
  which = str(which)
  if which not in ("best", "latest") and not which.isdigit():
    raise InputError(f"checkpoint={which!r} must be 'best', 'latest' or an epoch-end step.")
  ckpt = _checkpointer(workdir)
  if which.isdigit():
    kept = sorted(ckpt.epochs.all_steps())
    ckpt.close()
    if int(which) not in kept:
      raise InputError(f"{workdir} has no epoch-end checkpoint at step {which}; kept steps: "
                       f"{kept}.")
    return int(which)
  step = ckpt.best_step() if which == "best" else ckpt.latest_step()
  ckpt.close()
  if step is None:
    raise InputError(f"{workdir} holds no checkpoint yet; train the model first.")
  return step


def _restore_exactly(workdir: str, which: str, step: int) -> dict:
  """The variables of checkpoint `step`, or InputError: an alignment must never quietly score
  another step than the one it names."""
  path = os.path.join(workdir, checkpoint.EPOCH_DIR, str(step))
  try:
    variables = pretrained.load_variables(path)
    bad = checkpoint.non_finite_leaves(variables)
    if bad:
      raise ValueError(f"it holds NaN or inf in {', '.join(bad[:3])}")
  except Exception as e:  # pylint: disable=broad-except  (orbax raises many kinds)
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    raise InputError(f"The {which} checkpoint of {workdir} (step {step}) cannot be used: "
                     f"{reason}. The alignment does not switch to another step on its own: "
                     "restore that checkpoint, retrain, or ask for another one "
                     f"(checkpoint={'latest' if which == 'best' else 'best'}).") from e
  return variables


def load_trained(workdir: str, which: str = "best") -> TrainedModel:
  """Restores the `which` checkpoint ('best' by the task's validation metric, 'latest', or an
  epoch-end step number)."""
  step = checkpoint_step(workdir, which)
  config = read_config(workdir)
  task = tasks.TASKS[config.task](**config.task_kwargs)
  variables = _restore_exactly(workdir, which, step)
  model = create_model(config.model, **config.model_kwargs)
  return TrainedModel(workdir, config, model, variables, step,
                      input_pipeline.PREPROCESSING[task.preprocessing])


def _hash_projection(size: int, max_dims: int, seed: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  rng = np.random.default_rng([seed, size])
  return (jnp.asarray(rng.integers(0, max_dims, size), jnp.int32),
          jnp.asarray(rng.choice(np.array([-1.0, 1.0], np.float32), size)))


def _reduce(x, reduction: str, max_dims: int, seed: int):
  """[b, ...] -> [b, d]: spatial maps pooled or projected; vectors unchanged."""
  if x.ndim == 2:
    return x
  if reduction == "mean":
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
  flat = x.reshape(x.shape[0], -1)
  if flat.shape[1] <= max_dims:
    return flat
  bucket, sign = _hash_projection(flat.shape[1], max_dims, seed)
  return jax.ops.segment_sum((flat * sign).T, bucket, num_segments=max_dims).T


def softmax(logits: np.ndarray) -> np.ndarray:
  """Class probabilities [n, classes] from logits, computed in float64 so rows sum to 1."""
  return np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), axis=-1))


def extract_features(trained: TrainedModel, images: np.ndarray, layers: list[str], *,
                     batch_size: int = 500, reduction: str = "mean", max_dims: int = 4096,
                     seed: int = 0) -> dict[str, np.ndarray]:
  """Named features of uint8 images [n, 32, 32, 3] -> {layer: float32 [n, d]}."""
  if reduction not in REDUCTIONS:
    raise InputError(f"reduction={reduction!r} must be one of {REDUCTIONS}.")
  if batch_size < 1 or max_dims < 1:
    raise InputError(f"batch_size={batch_size} and max_dims={max_dims} must be >= 1.")
  probe = jnp.zeros((1, 32, 32, 3), jnp.float32)
  available = jax.eval_shape(lambda v: trained.model.apply(v, probe, train=False)[1],
                             trained.variables)
  missing = [l for l in layers if l not in available]
  if missing:
    raise InputError(f"{trained.config.model} has no layer {missing}; available: "
                     f"{sorted(available)}.")

  precision = backend.feature_precision()

  @jax.jit
  def forward(variables, x):
    with (jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()):
      _, features = trained.model.apply(variables, x, train=False)
    return {l: _reduce(features[l], reduction, max_dims, seed) for l in layers}

  outputs = {l: [] for l in layers}
  n = len(images)
  progress = Progress(f"features of {trained.config.model} ({n:,} images)",
                      -(-n // batch_size))
  for k, start in enumerate(range(0, n, batch_size)):
    batch = images[start:start + batch_size]
    padded = np.concatenate([batch, np.zeros((batch_size - len(batch),) + batch.shape[1:],
                                             batch.dtype)]) if len(batch) < batch_size else batch
    x = input_pipeline.preprocess(padded, trained.preprocessing, None)
    for layer, value in forward(trained.variables, x).items():
      outputs[layer].append(np.asarray(value[:len(batch)], np.float32))
    progress.update(k + 1)
  return {l: np.concatenate(v) for l, v in outputs.items()}
