"""Fine-tuning toward humans: the CIFAR-10H k-fold protocol (Peterson et al., ICCV 2019).

From a CIFAR-10 checkpoint, one network per fold is fine-tuned on the other k - 1 folds of the
test images and evaluated only on its own held-out fold, for each target:
  cifar10h  the CIFAR-10H label distributions (soft labels): the "aligned" model
  cifar10   the CIFAR-10 hard labels of the same images: the control
Each fold's final checkpoint (fixed budget; nothing is selected on held-out images) predicts its
held-out images; the out-of-fold softmax outputs pool into one set covering every image, while
internal features stay per fold (k different networks do not share a feature space).

Writes `<workdir>/<target>/fold_XX/` (ordinary training workdirs), `<workdir>/<target>/
out_of_fold.npz` and `<workdir>/finetune.json`; rerunning skips finished folds.
"""

import json
import os

import ml_collections
import numpy as np
from absl import logging

from align_jax import config_checks, features, multihost
from align_jax import workdir as workdir_lib
from align_jax.data import cifar10, cifar10h, splits
from align_jax.errors import InputError
from align_jax.config_checks import split_list
from align_jax.pipeline import outputs
from align_jax.training import loop

TARGETS = {"cifar10h": "human_probs", "cifar10": "label"}
MARKER_FILE = "finetune.json"
OUT_OF_FOLD_FILE = "out_of_fold.npz"
PROTOCOL_FIELDS = ("targets", "layers")  # fields of the fine-tuning config, not of a fold's run


def is_finetune_workdir(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, MARKER_FILE))


def read_marker(workdir: str) -> dict:
  with open(os.path.join(workdir, MARKER_FILE)) as f:
    return json.load(f)


def fold_config(config, base: ml_collections.ConfigDict, init_path: str, target: str,
                fold: int) -> ml_collections.ConfigDict:
  """The training config of one fold: `config`'s fields, `base`'s model, `target`'s labels."""
  fold_cfg = ml_collections.ConfigDict(
      {k: v for k, v in config.to_dict().items() if k not in PROTOCOL_FIELDS})
  fold_cfg.model = base.model
  fold_cfg.model_kwargs = base.model_kwargs
  fold_cfg.task = "classification"
  fold_cfg.task_kwargs = ml_collections.ConfigDict({"target_field": TARGETS[target]})
  fold_cfg.init_from = init_path
  fold_cfg.fold = fold
  return fold_cfg


def _collect_out_of_fold(fold_dirs: list[str], folds: np.ndarray, images: np.ndarray,
                         layers: list[str], batch_size: int) -> dict[str, np.ndarray]:
  """Softmax outputs of each fold's final checkpoint on its held-out images, pooled, plus each
  fold's features ('<layer>' arrays in held-out image order, grouped by fold)."""
  probs = np.zeros((len(folds), 10), np.float32)
  per_fold = {layer: [] for layer in layers}
  steps = []
  wanted = sorted(set(layers) | {"logits"})
  for fold, fold_dir in enumerate(fold_dirs):
    trained = features.load_trained(fold_dir, "latest")
    held_out = np.flatnonzero(folds == fold)
    outputs = features.extract_features(trained, images[held_out], wanted, batch_size=batch_size)
    probs[held_out] = features.softmax(outputs["logits"])
    for layer in layers:
      per_fold[layer].append(outputs[layer])
    steps.append(trained.step)
  order = np.argsort(folds, kind="stable")  # held-out images grouped by fold, ascending ids
  arrays = {"probs": probs, "folds": folds, "image_index": order, "steps": np.asarray(steps)}
  arrays.update({f"features/{layer}": np.concatenate(v) for layer, v in per_fold.items()})
  return arrays


def finetune_cifar10h(config, workdir: str) -> dict:
  """Runs the protocol for every target in `config.targets`; returns finetune.json's content."""
  config_checks.finetune(config)
  base = features.read_config(config.init_from)
  if base.task != "classification":
    raise InputError(f"init_from={config.init_from!r} trained a {base.task!r} model; CIFAR-10H "
                     "fine-tuning needs a classifier.")
  init_step = features.checkpoint_step(config.init_from, "best")
  init_path = os.path.join(os.path.abspath(config.init_from), "checkpoints", str(init_step))
  data = cifar10.load_cifar10(config.data_dir)
  cifar10h.load_cifar10h(config.data_dir, data.test_labels)  # checked before any fold writes
  n = splits.protocol_size(config.test_subset, len(data.test_labels))
  folds = splits.fold_assignment(n, config.num_folds, config.seed)
  with workdir_lib.lock(workdir):
    return _run_folds(config, workdir, base, init_step, init_path, data, n, folds)


def _run_folds(config, workdir: str, base, init_step: int, init_path: str, data, n: int,
               folds: np.ndarray) -> dict | None:
  """Every target's folds, out-of-fold arrays and finetune.json (see module). Every fold of
  every target trains first (with all processes of a multi-host run); then process 0 alone
  collects and writes, and the others return None."""
  targets = split_list(config.targets)
  fold_dirs = {t: [os.path.join(workdir, t, f"fold_{f:02d}") for f in range(config.num_folds)]
               for t in targets}
  results = {t: [] for t in targets}
  for target in targets:
    for fold, fold_dir in enumerate(fold_dirs[target]):
      logging.info("Fine-tuning on %s labels: fold %d/%d (%d held-out images).", target,
                   fold + 1, config.num_folds, int(np.sum(folds == fold)))
      results[target].append(loop.train_and_evaluate(
          fold_config(config, base, init_path, target, fold), fold_dir))
  if not multihost.is_primary():
    return None
  layers = split_list(config.layers)
  summary = {"model": base.model, "init_from": os.path.abspath(config.init_from),
             "init_step": init_step, "num_folds": config.num_folds, "num_images": n,
             "seed": config.seed, "layers": layers, "targets": {}}
  for target in targets:
    arrays = _collect_out_of_fold(fold_dirs[target], folds, data.test_images[:n], layers,
                                  config.eval_batch_size)
    path = os.path.join(workdir, target, OUT_OF_FOLD_FILE)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    summary["targets"][target] = {
        "out_of_fold": path, "fold_workdirs": fold_dirs[target],
        "steps": arrays["steps"].tolist(),
        "held_out_accuracy": [r["test"]["accuracy"] for r in results[target]]}
  outputs.atomic_write_json(os.path.join(workdir, MARKER_FILE), summary)
  return summary
