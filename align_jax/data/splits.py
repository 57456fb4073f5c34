"""Train / validation / test example dicts for training runs, from a config.

CIFAR-10 training (`num_folds == 0`): the validation split is a seeded hold-out of the CIFAR-10
training set and selects checkpoints; the test split (the CIFAR-10H image set) is only reported.

CIFAR-10H fine-tuning (`num_folds == k > 0`, Peterson et al., ICCV 2019): the first
`test_subset` test images (0 = all 10,000) are dealt into k seeded folds; fold `fold` is held
out (validation = test = its images) and the model trains on the other k - 1 folds, with the
CIFAR-10H label distributions as `human_probs` beside the CIFAR-10 `label`.
"""

import hashlib

import numpy as np

from align_jax.data import cifar10, cifar10h, input_pipeline
from align_jax.errors import InputError


def data_identity(data: cifar10.Cifar10, *extra: np.ndarray) -> str:
  """sha256 of what identifies the data a run learns from: the test images, every label, and
  `extra` arrays (CIFAR-10H when fine-tuning). A swapped archive (e.g. the JPEG stand-in for
  the official one) changes the test images; a moved one changes nothing."""
  digest = hashlib.sha256()
  for array in (data.test_images, data.test_labels, data.train_labels) + extra:
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def _subset(n: int, size: int, seed: int, purpose: int) -> np.ndarray:
  """Indices of a seeded random subset of size `size` (all when size is 0), sorted."""
  if not size or size >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng([seed, purpose]).choice(n, size, replace=False))


def protocol_size(test_subset: int, num_test: int) -> int:
  """How many test images a CIFAR-10H protocol uses: the first `test_subset` (0 = all)."""
  if not 0 <= test_subset <= num_test:
    raise InputError(f"test_subset={test_subset} must be in 0..{num_test} (0 = all "
                     f"{num_test} test images).")
  return test_subset or num_test


def fold_assignment(num_images: int, num_folds: int, seed: int) -> np.ndarray:
  """[num_images] fold ids in 0..num_folds-1: a seeded shuffle dealt round-robin, so fold
  sizes differ by at most one."""
  if not 2 <= num_folds <= num_images:
    raise InputError(f"num_folds={num_folds} must be in 2..{num_images} (the number of images "
                     "taking part).")
  folds = np.empty(num_images, np.int32)
  folds[np.random.default_rng([seed, 0xF01D]).permutation(num_images)] = (
      np.arange(num_images) % num_folds)
  return folds


def _take(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
  return {k: v[idx] for k, v in arrays.items()}


def _fold_splits(config, data: cifar10.Cifar10) -> dict[str, dict[str, np.ndarray]]:
  if not 0 <= config.fold < config.num_folds:
    raise InputError(f"fold={config.fold} must be in 0..{config.num_folds - 1}.")
  probs, _ = cifar10h.load_cifar10h(config.data_dir, data.test_labels)
  identity = data_identity(data, probs)
  n = protocol_size(config.test_subset, len(data.test_labels))
  arrays = {"image": data.test_images[:n], "label": data.test_labels[:n],
            "human_probs": probs[:n].astype(np.float32)}
  folds = fold_assignment(n, config.num_folds, config.seed)
  held_out = _take(arrays, np.flatnonzero(folds == config.fold))
  train = _take(arrays, np.flatnonzero(folds != config.fold))
  train = _take(train, _subset(len(train["label"]), config.train_subset, config.seed, 1))
  return {"train": train, "validation": held_out, "test": held_out, "identity": identity}


def load_training_splits(config) -> dict:
  """{'train', 'validation', 'test'} -> {'image': uint8 [n, 32, 32, 3], 'label': int32 [n]}
  (+ 'human_probs' float32 [n, 10] when fine-tuning on CIFAR-10H folds), and 'identity': a
  checksum of the data (training/resume.py compares it on resume)."""
  data = cifar10.load_cifar10(config.data_dir)
  if config.num_folds:
    return _fold_splits(config, data)
  train_idx, val_idx = input_pipeline.train_validation_split(
      len(data.train_labels), config.num_validation, config.seed)
  train_idx = train_idx[_subset(len(train_idx), config.train_subset, config.seed, 1)]
  test_idx = np.arange(config.test_subset or len(data.test_labels))

  def take(images, labels, idx):
    return {"image": images[idx], "label": labels[idx]}

  return {
      "train": take(data.train_images, data.train_labels, train_idx),
      "validation": take(data.train_images, data.train_labels, val_idx),
      "test": take(data.test_images, data.test_labels, test_idx),
      "identity": data_identity(data),
  }
