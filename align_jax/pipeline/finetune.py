"""Fine-tuning toward humans: the CIFAR-10H k-fold protocol (Peterson et al., ICCV 2019).

From a CIFAR-10 checkpoint, the test images are dealt into k folds; for each fold a model is
fitted on the other k - 1 folds and evaluated only on its own held-out fold, for each target:
  cifar10h  the CIFAR-10H label distributions (soft labels): the "aligned" model
  cifar10   the CIFAR-10 hard labels of the same images: the control
`mode` says what is fitted: 'full' fine-tunes the whole network (one training workdir per fold;
its final checkpoint, a fixed budget, predicts the held-out images), 'head' freezes the network
and refits only its classifier head (pipeline/heads.py; seconds instead of hours on a CPU).
With `temperature_baseline`, the starting network with one temperature per fold fitted on the
training folds' human distributions is scored too (target 'temperature'): a gain of soft-label
training over it is more than calibration. Out-of-fold softmax outputs pool into one set
covering every image; internal features stay per fold (k networks do not share a feature
space; in 'head' mode only the logits change: the layers below are the frozen network's).

Writes `<workdir>/<target>/out_of_fold.npz` (and in 'full' mode `<workdir>/<target>/fold_XX/`,
ordinary training workdirs) and `<workdir>/finetune.json` last; rerunning skips finished folds.
"""

import json
import os

import ml_collections
import numpy as np
from absl import logging

from align_jax import features
from align_jax.data import cifar10, cifar10h, splits
from align_jax.errors import InputError
from align_jax.pipeline import heads, outputs
from align_jax.runtime import config_checks, multihost
from align_jax.runtime import workdir as workdir_lib
from align_jax.runtime.config_checks import split_list
from align_jax.training import loop

TARGETS = {"cifar10h": "human_probs", "cifar10": "label"}
MARKER_FILE = "finetune.json"
OUT_OF_FOLD_FILE = "out_of_fold.npz"
PROTOCOL_FIELDS = ("targets", "layers", "mode", "head_steps", "head_learning_rate",
                   "temperature_baseline")  # fields of the fine-tuning config, not of a fold's run


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
  arrays = _out_of_fold_arrays(probs, folds, steps)
  arrays.update({f"features/{layer}": np.concatenate(v) for layer, v in per_fold.items()})
  return arrays


def finetune_cifar10h(config, workdir: str) -> dict:
  """Runs the protocol for every target in `config.targets` in `config.mode`; returns
  finetune.json's content."""
  config_checks.finetune(config)
  base = features.read_config(config.init_from)
  if base.task != "classification":
    raise InputError(f"init_from={config.init_from!r} trained a {base.task!r} model; CIFAR-10H "
                     "fine-tuning needs a classifier.")
  init_step = features.checkpoint_step(config.init_from, "best")
  init_path = os.path.join(os.path.abspath(config.init_from), "checkpoints", str(init_step))
  data = cifar10.load_cifar10(config.data_dir)
  # checked before any fold writes
  human_probs, _ = cifar10h.load_cifar10h(config.data_dir, data.test_labels)
  n = splits.protocol_size(config.test_subset, len(data.test_labels))
  folds = splits.fold_assignment(n, config.num_folds, config.seed)
  targets = {"cifar10h": human_probs[:n],
             "cifar10": np.eye(10, dtype=np.float32)[data.test_labels[:n]]}
  with workdir_lib.lock(workdir):
    found = (_run_folds(config, workdir, base, init_path, data.test_images[:n], folds)
             if config.mode == "full" else {})
    if not multihost.is_primary():  # 'head' and the baseline are cheap: process 0 alone
      return None
    if config.mode == "head" or config.temperature_baseline:
      start = _starting_network(config, data.test_images[:n])
    if config.mode == "head":
      found = _run_heads(config, start, targets, folds, init_step)
    if config.temperature_baseline:
      found["temperature"] = _temperature_baseline(start[1]["logits"], targets["cifar10h"],
                                                   folds, init_step)
    return _publish(config, workdir, base, init_step, n, folds, found)


def _starting_network(config, images: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
  """The starting network (its best checkpoint, as the folds start): its parameters and its
  penultimate features and logits of `images`, extracted once for the head and the baseline."""
  trained = features.load_trained(config.init_from, "best")
  return trained.variables["params"], features.extract_features(
      trained, images, ["logits", "penultimate"], batch_size=config.eval_batch_size)


def _out_of_fold_arrays(probs: np.ndarray, folds: np.ndarray, steps) -> dict[str, np.ndarray]:
  """The arrays every out_of_fold.npz holds; `image_index` orders the per-fold features:
  held-out images grouped by fold, ascending ids within."""
  return {"probs": probs, "folds": folds, "image_index": np.argsort(folds, kind="stable"),
          "steps": np.asarray(steps)}


def _run_folds(config, workdir: str, base, init_path: str, images: np.ndarray,
               folds: np.ndarray) -> dict | None:
  """mode='full': one network per fold and target, trained with all processes of a multi-host
  run; then process 0 alone collects the out-of-fold arrays (the others get None)."""
  fold_dirs = {t: [os.path.join(workdir, t, f"fold_{f:02d}") for f in range(config.num_folds)]
               for t in split_list(config.targets)}
  found = {}
  for target, dirs in fold_dirs.items():
    results = []
    for fold, fold_dir in enumerate(dirs):
      logging.info("Fine-tuning on %s labels: fold %d/%d (%d held-out images).", target,
                   fold + 1, config.num_folds, int(np.sum(folds == fold)))
      results.append(loop.train_and_evaluate(
          fold_config(config, base, init_path, target, fold), fold_dir))
    if multihost.is_primary():
      arrays = _collect_out_of_fold(dirs, folds, images, split_list(config.layers),
                                    config.eval_batch_size)
      found[target] = (arrays, {"fold_workdirs": dirs,
                                "held_out_accuracy": [r["test"]["accuracy"] for r in results]})
  return found if multihost.is_primary() else None


def _run_heads(config, start: tuple[dict, dict[str, np.ndarray]], targets: dict[str, np.ndarray],
               folds: np.ndarray, init_step: int) -> dict:
  """mode='head': the network frozen, its classifier head refitted per fold on the training
  folds' targets (pipeline/heads.py). Of `layers`, only the logits change, so only they are
  kept per fold (the frozen layers are the starting network's, scored pooled)."""
  params, base = start
  head = heads.find_head(params, base["penultimate"].shape[1], base["logits"].shape[1])
  found = {}
  for target in split_list(config.targets):
    logits = np.zeros_like(base["logits"])
    kernels, biases, accuracy = [], [], []
    for fold in range(config.num_folds):
      train, held_out = folds != fold, folds == fold
      kernel, bias = heads.fit_head(
          base["penultimate"][train], targets[target][train], params[head]["kernel"],
          params[head]["bias"], steps=config.head_steps, learning_rate=config.head_learning_rate,
          weight_decay=config.weight_decay)
      logits[held_out] = base["penultimate"][held_out] @ kernel + bias
      kernels.append(kernel)
      biases.append(bias)
      accuracy.append(float(np.mean(np.argmax(logits[held_out], 1)
                                    == np.argmax(targets["cifar10"][held_out], 1))))
      logging.info("Head on %s labels: fold %d/%d, held-out accuracy %.4f.", target, fold + 1,
                   config.num_folds, accuracy[-1])
    arrays = _out_of_fold_arrays(features.softmax(logits).astype(np.float32), folds,
                                 [init_step] * config.num_folds)
    arrays.update(head_kernels=np.stack(kernels), head_biases=np.stack(biases))
    if "logits" in split_list(config.layers):  # the layers below the head are frozen: the
      arrays["features/logits"] = logits[arrays["image_index"]]  # pooled rows' features
    found[target] = (arrays, {"head": head, "held_out_accuracy": accuracy})
  return found


def _temperature_baseline(logits: np.ndarray, human_probs: np.ndarray, folds: np.ndarray,
                          init_step: int) -> tuple[dict, dict]:
  """The starting network's `logits` with one temperature per fold, fitted on the training
  folds' human distributions and applied to the held-out fold (out-of-fold probs only)."""
  num_folds = int(folds.max()) + 1
  probs, temperatures = np.zeros_like(logits), []
  for fold in range(num_folds):
    train, held_out = folds != fold, folds == fold
    temperatures.append(heads.fit_temperature(logits[train], human_probs[train]))
    probs[held_out] = features.softmax(logits[held_out] / temperatures[-1])
  logging.info("Temperature scaling: T per fold %s.", [round(t, 3) for t in temperatures])
  arrays = _out_of_fold_arrays(probs.astype(np.float32), folds, [init_step] * num_folds)
  arrays["temperatures"] = np.asarray(temperatures)
  return arrays, {"temperatures": temperatures}


def _publish(config, workdir: str, base, init_step: int, n: int, folds: np.ndarray,
             found: dict[str, tuple[dict, dict]]) -> dict:
  """Writes each target's out_of_fold.npz and finetune.json (last: it marks the run done)."""
  summary = {"model": base.model, "init_from": os.path.abspath(config.init_from),
             "init_step": init_step, "mode": config.mode, "num_folds": config.num_folds,
             "num_images": n, "seed": config.seed, "layers": split_list(config.layers),
             "targets": {}}
  for target, (arrays, info) in found.items():
    path = os.path.join(workdir, target, OUT_OF_FOLD_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    summary["targets"][target] = {"out_of_fold": path, "steps": arrays["steps"].tolist(), **info}
  outputs.atomic_write_json(os.path.join(workdir, MARKER_FILE), summary)
  return summary
