"""What the alignment run compares with humans, gathered per model entry `label=path`.

A training workdir gives features of every image from one checkpoint (plus softmax outputs for
classifiers, image grids for the VAE). A fine-tuning workdir (experiments.finetune_cifar10h)
gives, per target, pooled out-of-fold softmax outputs over every image and each fold's own
features of its held-out images. A `.npz` file brings any other model: named arrays
[10000, ...] over the CIFAR-10 test images in the official order; every array is a layer, and
`probs` (probability rows) or else `logits` also feed the behavioural measures.
"""

import dataclasses
import os

import numpy as np
from absl import logging

from align_jax import features
from align_jax.data import input_pipeline
from align_jax.errors import InputError
from align_jax.pipeline import cache, finetune
from align_jax.runtime.config_checks import split_list
from align_jax.training import samples

PROBS = "probs"  # a derived layer: softmax of the logits
GRID_IMAGES = 16
TEST_IMAGES = 10_000  # rows of a model file: every CIFAR-10 test image, official order


@dataclasses.dataclass
class Representations:
  label: str
  model: str  # model kind, from the workdir's config
  workdir: str
  checkpoint_steps: list[int]
  pooled: dict[str, np.ndarray]  # layer -> [n_images, d], every image
  fold_features: dict[str, list[np.ndarray]]  # layer -> per fold [n_held_out, d]
  fold_images: list[np.ndarray]  # per fold: indices of its held-out images
  probs: np.ndarray | None  # [n_images, classes] softmax outputs of classifiers
  grids: dict[str, np.ndarray]  # VAE image grids
  source: str  # 'checkpoint' or 'out_of_fold:<target>'
  validation: dict = dataclasses.field(default_factory=dict)  # a checkpoint's saved metrics


def split_checkpoint(path: str, default: str) -> tuple[str, str]:
  """'W@1404' -> ('W', '1404'); 'W@best', 'W@latest' likewise; 'W' -> ('W', default)."""
  workdir, sep, which = path.rpartition("@")
  if sep and (which in ("best", "latest") or which.isdigit()):
    return workdir, which
  return path, default


def parse_models(text: str) -> dict[str, str]:
  """'a=W1,b=W2@1404' -> {'a': 'W1', 'b': 'W2@1404'}, with clear errors for malformed entries.
  A training workdir may end in @best, @latest or @STEP (an epoch-end step) to choose its
  checkpoint; otherwise the run's `checkpoint` applies."""
  models = {}
  for entry in split_list(text):
    label, sep, workdir = entry.partition("=")
    label, workdir = label.strip(), workdir.strip()
    if not sep or not label or not workdir:
      raise InputError(f"models entry {entry!r} must look like label=WORKDIR.")
    if not label.replace("_", "").replace("-", "").isalnum():
      raise InputError(f"model label {label!r} may hold only letters, digits, '_' and '-' "
                       "(it names files).")
    if label in models:
      raise InputError(f"model label {label!r} appears twice in models.")
    directory, which = split_checkpoint(workdir, "")
    if workdir.endswith(".npz"):
      if not os.path.isfile(workdir):
        raise InputError(f"{label}={workdir}: no such model file.")
    elif which:
      if not os.path.isfile(os.path.join(directory, "config.json")):
        raise InputError(f"{label}={workdir}: @{which} chooses a checkpoint of a training "
                         f"workdir, and {directory} has no config.json.")
      features.checkpoint_step(directory, which)  # a step that is not kept fails here, early
    elif not (os.path.isfile(os.path.join(workdir, "config.json"))
              or finetune.is_finetune_workdir(workdir)):
      raise InputError(f"{label}={workdir}: not a training or fine-tuning workdir (it has "
                       "neither config.json nor finetune.json) nor a .npz model file.")
    models[label] = workdir
  if not models:
    raise InputError("models is empty: pass --config.models=label=WORKDIR[,label=WORKDIR...].")
  return models


def _extract(label: str, workdir: str, which: str, images: np.ndarray, wanted: list[str],
             config) -> dict[str, np.ndarray]:
  """{layer: features} of checkpoint `which` (+ 'grid/<name>' image grids for the VAE)."""
  trained = features.load_trained(workdir, which)
  logging.info("%s: extracting %s from %s step %d on %d images.", label, wanted,
               trained.config.model, trained.step, len(images))
  arrays = features.extract_features(trained, images, wanted, batch_size=config.batch_size,
                                     reduction=config.reduction, max_dims=config.max_dims,
                                     seed=config.seed)
  if trained.config.task == "vae":
    x = input_pipeline.preprocess(images[:GRID_IMAGES], trained.preprocessing, None)
    grids = samples.vae_grids(trained.model, trained.variables, x, seed=config.seed)
    arrays.update({f"grid/{name}": grid for name, grid in grids.items()})
  return arrays


def from_checkpoint(label: str, workdir: str, which: str, images: np.ndarray,
                    layers_by_task: dict[str, list[str]], config, store) -> Representations:
  """Features of every image from the workdir's `which` checkpoint (best, latest or a step),
  for the layers its task asks for (classifiers always extract logits: their softmax feeds the
  behaviour). Reused from `store` (a pipeline.cache.Cache) when nothing they depend on
  changed."""
  saved = features.read_config(workdir)
  step = features.checkpoint_step(workdir, which)
  layers = layers_by_task[saved.task]
  classifier = saved.task == "classification"
  wanted = sorted({l for l in layers if l != PROBS} | ({"logits"} if classifier else set()))
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  arrays = store.arrays(cache.key(
      kind="features", workdir=os.path.abspath(workdir), step=step,
      written=os.stat(step_dir).st_mtime_ns, layers=wanted, images=cache.digest(images),
      reduction=config.reduction, max_dims=config.max_dims, seed=config.seed),
      lambda: _extract(label, workdir, str(step), images, wanted, config))
  pooled = {k: v for k, v in arrays.items() if not k.startswith("grid/")}
  grids = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("grid/")}
  probs = features.softmax(pooled["logits"]) if classifier else None
  if PROBS in layers:
    pooled[PROBS] = probs.astype(np.float32)
  return Representations(label, saved.model, workdir, [step], {l: pooled[l] for l in layers},
                         {}, [], probs, grids, "checkpoint",
                         features.epoch_metrics(workdir).get(step, {}))


def _file_layer(path: str, name: str, value: np.ndarray) -> np.ndarray:
  """A validated layer of a model file as float32 [10000, d] (spatial maps mean-pooled)."""
  where = f"{path}: array {name!r}"
  if not np.issubdtype(value.dtype, np.number) or value.ndim < 2:
    raise InputError(f"{where} must be numbers shaped [{TEST_IMAGES}, ...]; got {value.dtype} "
                     f"{value.shape}.")
  if value.shape[0] != TEST_IMAGES:
    raise InputError(f"{where} has {value.shape[0]:,} rows; a model file holds one row per "
                     f"CIFAR-10 test image, all {TEST_IMAGES:,} in the official order.")
  value = value.astype(np.float32).reshape(TEST_IMAGES, -1, value.shape[-1]).mean(axis=1) \
      if value.ndim > 2 else value.astype(np.float32)
  bad = np.flatnonzero(~np.all(np.isfinite(value), axis=1))
  if bad.size:
    raise InputError(f"{where} has NaN or inf in rows {bad[:5].tolist()}; clean them first.")
  return value


def from_file(label: str, path: str, num_images: int) -> Representations:
  """A bring-your-own model: every array of the .npz at `path` is a layer (see module)."""
  try:
    with np.load(path, allow_pickle=False) as arrays:
      raw = {name: arrays[name] for name in arrays.files}
  except (ValueError, OSError, EOFError) as e:
    raise InputError(f"{path} is not a plain numeric .npz file ({e}); save it with np.savez "
                     "from numeric arrays (pickled objects are refused).") from e
  if not raw:
    raise InputError(f"{path} holds no arrays; save at least one layer [{TEST_IMAGES}, d].")
  layers = {name: _file_layer(path, name, value) for name, value in sorted(raw.items())}
  probs = None
  if PROBS in layers:
    probs = layers[PROBS].astype(np.float64)
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
      raise InputError(f"{path}: array 'probs' must hold probability rows (>= 0, summing to 1); "
                       "save logits as 'logits' instead.")
  elif "logits" in layers:
    probs = features.softmax(layers["logits"])
  logging.info("%s: %s from %s.", label, sorted(layers), path)
  return Representations(label, "file", path, [], {k: v[:num_images] for k, v in layers.items()},
                         {}, [], None if probs is None else probs[:num_images], {},
                         f"file:{os.path.abspath(path)}")


def from_finetuning(label: str, workdir: str, num_images: int) -> list[Representations]:
  """One Representations per fine-tuning target: '<label>' for CIFAR-10H soft labels,
  '<label>_control' for the hard-label control, '<label>_temperature' for the
  temperature-scaled starting network."""
  marker = finetune.read_marker(workdir)
  if marker["num_images"] < num_images:
    raise InputError(f"{label}={workdir} was fine-tuned with {marker['num_images']} images; the "
                     f"alignment run uses {num_images}. Use num_images <= "
                     f"{marker['num_images']} or rerun the fine-tuning with more.")
  out = []
  for target, info in sorted(marker["targets"].items(), key=lambda t: t[0] != "cifar10h"):
    with np.load(info["out_of_fold"]) as arrays:
      folds, order = arrays["folds"], arrays["image_index"]
      layers = {k.split("/", 1)[1]: arrays[k] for k in arrays.files if k.startswith("features/")}
      probs = arrays["probs"][:num_images].astype(np.float64)
    fold_images, fold_features = [], {l: [] for l in layers}
    for fold in range(marker["num_folds"]):
      rows = np.flatnonzero(folds[order] == fold)  # this fold's rows in the grouped arrays
      keep = order[rows] < num_images
      fold_images.append(order[rows][keep])
      for layer, values in layers.items():
        fold_features[layer].append(values[rows][keep])
    name = {"cifar10h": label, "cifar10": f"{label}_control"}.get(target, f"{label}_{target}")
    out.append(Representations(name, marker["model"], workdir, info["steps"],
                               {PROBS: probs.astype(np.float32)}, fold_features, fold_images,
                               probs, {}, f"out_of_fold:{target}"))
  return out
