"""What the alignment run compares with humans, gathered per model entry `label=workdir`.

A training workdir gives features of every image from one checkpoint (plus softmax outputs for
classifiers, image grids for the VAE). A fine-tuning workdir (experiments.finetune_cifar10h)
gives, per target, pooled out-of-fold softmax outputs over every image and each fold's own
features of its held-out images.
"""

import dataclasses
import os

import numpy as np
from absl import logging

from align_jax import features
from align_jax.data import input_pipeline
from align_jax.errors import InputError
from align_jax.pipeline import finetune, split_list
from align_jax.training import samples

PROBS = "probs"  # a derived layer: softmax of the logits
GRID_IMAGES = 16


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


def parse_models(text: str) -> dict[str, str]:
  """'a=W1,b=W2' -> {'a': 'W1', 'b': 'W2'}, with clear errors for malformed entries."""
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
    if not (os.path.isfile(os.path.join(workdir, "config.json"))
            or finetune.is_finetune_workdir(workdir)):
      raise InputError(f"{label}={workdir}: not a training or fine-tuning workdir (it has "
                       "neither config.json nor finetune.json).")
    models[label] = workdir
  if not models:
    raise InputError("models is empty: pass --config.models=label=WORKDIR[,label=WORKDIR...].")
  return models


def from_checkpoint(label: str, workdir: str, images: np.ndarray,
                    layers_by_task: dict[str, list[str]], config) -> Representations:
  """Features of every image from the workdir's `config.checkpoint` checkpoint, for the layers
  its task asks for (classifiers always extract logits: their softmax feeds the behaviour)."""
  trained = features.load_trained(workdir, config.checkpoint)
  layers = layers_by_task[trained.config.task]
  classifier = trained.config.task == "classification"
  wanted = sorted({l for l in layers if l != PROBS} | ({"logits"} if classifier else set()))
  logging.info("%s: extracting %s from %s step %d on %d images.", label, wanted,
               trained.config.model, trained.step, len(images))
  pooled = features.extract_features(trained, images, wanted,
                                     batch_size=config.batch_size, reduction=config.reduction,
                                     max_dims=config.max_dims, seed=config.seed)
  probs = features.softmax(pooled["logits"]) if classifier else None
  if PROBS in layers:
    pooled[PROBS] = probs.astype(np.float32)
  grids = {}
  if trained.config.task == "vae":
    x = input_pipeline.preprocess(images[:GRID_IMAGES], trained.preprocessing, None)
    grids = samples.vae_grids(trained.model, trained.variables, x, seed=config.seed)
  return Representations(label, trained.config.model, workdir, [trained.step],
                         {l: pooled[l] for l in layers}, {}, [], probs, grids, "checkpoint")


def from_finetuning(label: str, workdir: str, num_images: int) -> list[Representations]:
  """One Representations per fine-tuning target: '<label>' for CIFAR-10H soft labels,
  '<label>_control' for the hard-label control."""
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
    name = label if target == "cifar10h" else f"{label}_control"
    out.append(Representations(name, marker["model"], workdir, info["steps"],
                               {PROBS: probs.astype(np.float32)}, fold_features, fold_images,
                               probs, {}, f"out_of_fold:{target}"))
  return out
